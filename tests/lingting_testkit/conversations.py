"""Conversations built from ../shared/audio clips of different real speakers,
with known turns, and how well speaker labels match them (the speaker tests
and bench/speaker_bench.py share them).

Score: the share of words (characters for Mandarin) whose speaker is right,
after the best mapping of the server's labels onto the true speakers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from lingting_testkit.corpus import read_wav

RATE = 16000
GAP_S = 1.0

# Three English voices (LJ Speech's reader, a LibriVox reader, JFK), turns of 6-11 s.
ENGLISH = [("LJ", "en/ljspeech/LJ001-0001.wav"), ("AUSTEN", "en/ps_sense_and_sensibility_01_austen_64kb-0870.wav"),
           ("LJ", "en/ljspeech/LJ001-0003.wav"), ("JFK", "en/jfk.wav"),
           ("AUSTEN", "en/ps_sense_and_sensibility_01_austen_64kb-0920.wav"), ("LJ", "en/ljspeech/LJ001-0005.wav")]
# Two Mandarin voices, each clip cut in two: turns of 2-3 s.
MANDARIN = [("AISHELL", "zh/aishell_BAC009S0724W0121.wav", 0.0, 2.2), ("FUNASR", "zh/funasr_asr_example.wav", 0.0, 2.9),
            ("AISHELL", "zh/aishell_BAC009S0724W0121.wav", 2.2, None), ("FUNASR", "zh/funasr_asr_example.wav", 2.9, None)]
ONE_SPEAKER = [("LJ", f"en/ljspeech/LJ001-000{n}.wav") for n in range(1, 8)]


@dataclass
class Conversation:
    pcm: bytes
    turns: list[tuple[str, int, int]]        # (speaker, start_ms, end_ms)

    def speaker_at(self, ms: int) -> str | None:
        return next((s for s, start, end in self.turns if start - 300 <= ms <= end + 300), None)


def conversation(root, parts, gap_s: float = GAP_S) -> Conversation:
    pieces, turns, at = [], [], 0
    gap = np.zeros(int(gap_s * RATE), "<i2")
    for speaker, name, *cut in parts:
        samples, rate = read_wav(root / name)
        assert rate == RATE
        if cut:
            start, end = cut
            samples = samples[int(start * RATE):None if end is None else int(end * RATE)]
        turns.append((speaker, at * 1000 // RATE, (at + len(samples)) * 1000 // RATE))
        pieces += [samples, gap]
        at += len(samples) + len(gap)
    return Conversation(np.concatenate(pieces).astype("<i2").tobytes(), turns)


def labelled_units(finals: list[dict], relabel: dict | None = None, chars: bool = False):
    """(predicted label, weight, time) per turn of each final: words, or characters for Mandarin."""
    for final in finals:
        for part in final.get("turns") or [final]:
            label = part.get("speaker")
            if relabel is not None:
                label = relabel.get((final["utterance"], part["start_ms"]), label)
            text = part["text"].replace(" ", "") if chars else part["text"].split()
            yield label, len(text), (part["start_ms"] + part["end_ms"]) // 2


def accuracy(units, talk: Conversation) -> float:
    units = [(label, weight, talk.speaker_at(mid)) for label, weight, mid in units]
    labels = sorted({u[0] for u in units if u[0]})
    truths = sorted({u[2] for u in units if u[2]})
    total = sum(w for _, w, truth in units if truth)
    best = 0
    for chosen in itertools.permutations(truths + [None] * max(0, len(labels) - len(truths)), len(labels)):
        mapping = dict(zip(labels, chosen))
        best = max(best, sum(w for label, w, truth in units if truth and mapping.get(label) == truth))
    return best / total if total else 0.0
