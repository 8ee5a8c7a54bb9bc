"""Hypothesis stabilizer: keeps live captions from flickering.

A prefix on which two consecutive partial decodes agree becomes stable and
never changes again within the utterance (LocalAgreement-2); later hypotheses
are grafted onto it."""

from __future__ import annotations

from .text import comparable, join_units, split_units


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
        committed = len(self._stable)
        # The new decode's first units re-say the committed prefix (perhaps a
        # little differently); what follows is grafted after it.
        tail = units[committed:]
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
