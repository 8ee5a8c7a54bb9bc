"""A stored session as JSON, plain text, SRT or WebVTT."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import srt

FORMATS = {"json": "application/json", "txt": "text/plain; charset=utf-8",
           "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


# Line and paragraph breaks and other control characters: in a cue or a line of
# text they would start a new one (a name could add a cue, or a header).
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    return _BREAKS.sub(" ", text)


def _line(utterance: dict) -> str:
    """The text, after its speaker's label (or the name a user gave it) when it
    has one: always one line, whatever the name or the text holds."""
    speaker = utterance.get("speaker")
    text = one_line(utterance["text"])
    return f"{one_line(speaker)}: {text}" if speaker else text


def _vtt_text(text: str) -> str:
    """WebVTT cue text escapes &, < and > (so --> cannot appear in a cue)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _spoken(session: dict) -> list[dict]:
    """Utterances with text, in time order across channels; one that changed
    speaker part-way (diarize) as its turns; speakers by their given names."""
    names = session.get("speaker_names") or {}
    lines = []
    for u in session["utterances"]:
        for part in (u.get("turns") or [u]):
            if part["text"].strip():
                speaker = part.get("speaker")
                lines.append({**u, **part, "speaker": names.get(speaker, speaker)})
    return sorted(lines, key=lambda u: (u["start_ms"], u.get("idx", 0)))


def _cues(session: dict) -> list[srt.Subtitle]:
    return [srt.Subtitle(index=n, start=timedelta(milliseconds=u["start_ms"]),
                         end=timedelta(milliseconds=max(u["end_ms"], u["start_ms"] + 1)), content=_line(u))
            for n, u in enumerate(_spoken(session), start=1)]


def render(session: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(session, ensure_ascii=False, indent=2)
    if fmt == "txt":
        return "".join(_line(u) + "\n" for u in _spoken(session))
    if fmt == "srt":
        return srt.compose(_cues(session), reindex=False)
    if fmt == "vtt":
        # WebVTT cues are SRT cues with '.' before the milliseconds and no index needed.
        cues = (f"{srt.timedelta_to_srt_timestamp(c.start).replace(',', '.')} --> "
                f"{srt.timedelta_to_srt_timestamp(c.end).replace(',', '.')}\n{_vtt_text(c.content)}\n"
                for c in _cues(session))
        return "WEBVTT\n\n" + "\n".join(cues)
    raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
