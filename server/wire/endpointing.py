"""How a stream's speech is cut into utterances: the settings a client chooses
(start.endpointing, configure) and the segmenter follows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointConfig:
    silence_ms: int = 600          # trailing silence that ends an utterance (0: none does; flush or max length)
    max_utterance_ms: int = 20000  # Whisper sees 30 s at most; leave room
    vad_aggressiveness: int = 2    # webrtcvad 0 (lenient) .. 3 (strict)
    start_window_ms: int = 240     # window that decides that speech started
    start_ratio: float = 0.6       # fraction of voiced frames in that window
    preroll_ms: int = 300          # audio kept before the detected start
    tail_ms: int = 300             # silence kept after the last voiced frame
    frame_ms: int = 30
    # What the stream does with the silence (live.py): decode the final when it
    # begins, and end sooner when that text ends a sentence, later mid-clause.
    speculative: bool = True       # decode the final at the tail, before the endpoint fires
    sentence_end_ms: int = 300     # endpoint when the speculative text ends a sentence (. ? ! 。)
    mid_clause_ms: int = 600       # endpoint when it ends mid-clause (a comma, "and", "the"...)

    def validate(self) -> None:
        checks = [
            (self.silence_ms == 0 or 10 <= self.silence_ms <= 10000, "silence_ms must be 10..10000, or 0 (off)"),
            (1000 <= self.max_utterance_ms <= 28000, "max_utterance_ms must be 1000..28000"),
            (self.vad_aggressiveness in (0, 1, 2, 3), "vad_aggressiveness must be 0..3"),
            (self.frame_ms in (10, 20, 30), "frame_ms must be 10, 20 or 30"),
            (0 < self.start_ratio <= 1, "start_ratio must be in (0, 1]"),
            (10 <= self.sentence_end_ms <= 10000, "sentence_end_ms must be 10..10000"),
            (10 <= self.mid_clause_ms <= 10000, "mid_clause_ms must be 10..10000"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
