"""A stored session as JSON, plain text, SRT or WebVTT."""

from __future__ import annotations

import json
from datetime import timedelta

import srt

FORMATS = {"json": "application/json", "txt": "text/plain; charset=utf-8",
           "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


def _cues(session: dict) -> list[srt.Subtitle]:
    return [srt.Subtitle(index=n, start=timedelta(milliseconds=u["start_ms"]),
                         end=timedelta(milliseconds=max(u["end_ms"], u["start_ms"] + 1)), content=u["text"])
            for n, u in enumerate((u for u in session["utterances"] if u["text"].strip()), start=1)]


def render(session: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(session, ensure_ascii=False, indent=2)
    if fmt == "txt":
        return "".join(u["text"] + "\n" for u in session["utterances"] if u["text"].strip())
    if fmt == "srt":
        return srt.compose(_cues(session), reindex=False)
    if fmt == "vtt":
        # WebVTT cues are SRT cues with '.' before the milliseconds and no index needed.
        cues = (f"{srt.timedelta_to_srt_timestamp(c.start).replace(',', '.')} --> "
                f"{srt.timedelta_to_srt_timestamp(c.end).replace(',', '.')}\n{c.content}\n" for c in _cues(session))
        return "WEBVTT\n\n" + "\n".join(cues)
    raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
