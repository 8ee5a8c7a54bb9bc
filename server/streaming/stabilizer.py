"""Hypothesis stabilizer: keeps live captions from flickering.

A prefix on which two consecutive partial decodes agree becomes stable and
never changes again within the utterance (LocalAgreement-2); later hypotheses
are grafted onto it."""

from __future__ import annotations

from difflib import SequenceMatcher

from ..wire.words import comparable, join_units, split_units


class Stabilizer:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._stable: list[str] = []
        self._previous: list[str] = []

    @property
    def has_text(self) -> bool:
        return bool(self._previous)

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Returns (stable_text, full_text) for a new partial hypothesis."""
        units = split_units(hypothesis)
        tail = units[self._end_of_stable(units):]
        committed = len(self._stable)
        previous_tail = self._previous[committed:]
        agreed = 0
        for a, b in zip(tail, previous_tail):
            if comparable(a) != comparable(b):
                break
            agreed += 1
        # Never commit the last unit of a hypothesis: it may still be growing.
        agreed = min(agreed, max(0, len(tail) - 1))
        self._stable += tail[:agreed]
        self._previous = self._stable + tail[agreed:]
        return join_units(self._stable), join_units(self._previous)

    def _end_of_stable(self, units: list[str]) -> int:
        """Where, in a new hypothesis, the committed prefix ends. The decoder
        may re-say that prefix a little differently ("i n" -> "9"): align the
        two and continue after the last committed unit it still agrees on."""
        stable = [comparable(u) for u in self._stable]
        new = [comparable(u) for u in units]
        if new[:len(stable)] == stable:
            return len(stable)
        last = None
        for block in SequenceMatcher(None, stable, new, autojunk=False).get_matching_blocks():
            if block.size:
                last = (block.a + block.size - 1, block.b + block.size - 1)
        if last is None:
            return min(len(stable), len(units))
        stable_index, new_index = last
        return min(len(units), new_index + 1 + (len(stable) - 1 - stable_index))
