"""What happens to a decode result's text before a session sees it: hotword
correction, ITN and the search for watch phrases.

Pure functions of the result and the job's TextWork. The batch collector runs
them on its one text thread, never on the event loop (ITN takes 5-8 ms a final,
hotword correction up to 6.5 ms a partial with 100 phrases). One thread, always
the same: kaldifst's FSTs loaded on one thread and used on another made the
server's memory grow with every final (issue 21), so ITN is warmed up there too."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .alerts import Occurrence, WatchPhrase, find_occurrences, mask_occurrences
from ..wire.recognition import DecodeResult
from .hotwords import Hotword, apply_hotwords
from .itn import inverse_normalize
from .redaction import redact, redact_words, spans


@dataclass(frozen=True)
class TextWork:
    """The text settings in force when a decode was asked for."""
    hotwords: tuple[Hotword, ...] = ()
    watch: tuple[WatchPhrase, ...] = ()
    itn: bool = True
    itn_partials: bool = False
    redact: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Recognized:
    result: DecodeResult
    raw_text: str                      # hotwords corrected
    text: str                          # and, for finals with ITN, in written form
    itn_text: str | None               # partials, when the client asked for ITN on them
    occurrences: tuple[Occurrence, ...]  # watch phrases found in raw_text


def postprocess(work: TextWork, kind: str, result: DecodeResult) -> Recognized:
    raw = apply_hotwords(result.text, work.hotwords) if result.text else ""
    if kind == "final":
        text = inverse_normalize(raw, result.language) if work.itn else raw
        itn_text = None
    else:
        text = raw
        itn_text = inverse_normalize(raw, result.language) if work.itn and work.itn_partials and raw else None
    found = tuple(find_occurrences(raw, work.watch)) if work.watch and raw else ()
    if work.redact:     # alerts were found on what was said; nothing below keeps it
        partial, said = kind == "partial", raw
        result = replace(result, text=redact(result.text, work.redact, partial),
                         words=redact_words(result.words, work.redact))
        raw, text = redact(raw, work.redact, partial), redact(text, work.redact, partial)
        itn_text = redact(itn_text, work.redact, partial)
        found = mask_occurrences(said, found, spans(said, work.redact, partial))
    return Recognized(result, raw, text, itn_text, found)
