"""The decode jobs waiting for a model worker, and which go next: the policy,
apart from the collector that runs the workers (batching.py).

Work is taken by the deadline it serves (Priority): a final whose endpoint
fired, then a speculative final (trailing silence: due when the endpoint
fires), then the first partial of an utterance (nothing on screen yet), then
refreshes of partials that already show text; oldest first within each.
Finals are never dropped. A lane (one stream's channel) has at most one
partial waiting: a newer one replaces it (only the newest hypothesis
matters), so under overload partial cadence degrades while finals keep
flowing, and the oldest waiting partial goes first, so no stream starves.
Offline files' finals ("background") yield to live finals and take turns with
live partials batch by batch, so a file never holds up live captions by more
than one batch and live load never stalls a file for good."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..streaming.commands import DecodeJob, Priority

Lane = tuple[str, int | None]      # (session id, channel)


@dataclass
class Waiting:
    job: DecodeJob
    future: asyncio.Future
    since: float


class DecodeQueue:
    def __init__(self):
        self._finals: deque[Waiting] = deque()
        self._speculative: dict[Lane, Waiting] = {}   # by lane: its open utterance's
        self._background: deque[Waiting] = deque()
        self._background_turn = True
        self._partials: dict[Lane, Waiting] = {}      # by lane: the newest only

    def __len__(self) -> int:
        return len(self._finals) + len(self._speculative) + len(self._partials) + len(self._background)

    @property
    def depth(self) -> dict:
        return {"final": len(self._finals), "speculative": len(self._speculative), "partial": len(self._partials),
                "background": len(self._background)}

    def add(self, waiting: Waiting) -> bool:
        """Queue it; True when it superseded its lane's waiting partial (which resolves to None)."""
        job = waiting.job
        stale = self._partials.pop(job.lane, None)
        if stale is not None:      # a newer partial, or the final, supersedes it
            if not stale.future.done():
                stale.future.set_result(None)
            # The session has waited since its first unserved partial: keep
            # its place in line, or a busy session would never get a turn.
            waiting.since = stale.since
        if job.priority is Priority.SPECULATIVE:
            self._speculative[job.lane] = waiting
        elif job.kind == "final":
            (self._background if job.background else self._finals).append(waiting)
        else:
            self._partials[job.lane] = waiting
        return stale is not None

    def expedite(self, job: DecodeJob) -> bool:
        """A speculative final becomes a final; False when it no longer waits."""
        waiting = self._speculative.get(job.lane)
        if waiting is None or waiting.job is not job:
            return False
        del self._speculative[job.lane]
        self._finals.append(waiting)
        return True

    def cancel(self, job: DecodeJob) -> None:
        """A speculative final that still waits resolves to None."""
        waiting = self._speculative.get(job.lane)
        if waiting is not None and waiting.job is job:
            del self._speculative[job.lane]
            if not waiting.future.done():
                waiting.future.set_result(None)

    def cancel_session(self, session_id: str) -> None:
        """The client left: its partial and file finals are cancelled, its speculative final
        becomes a final (it may be the last: history keeps it)."""
        for lane in [lane for lane in self._partials if lane[0] == session_id]:
            stale = self._partials.pop(lane)
            if not stale.future.done():
                stale.future.cancel()
        for lane in [lane for lane in self._speculative if lane[0] == session_id]:
            self._finals.append(self._speculative.pop(lane))
        for waiting in self._background:
            if waiting.job.session_id == session_id:
                waiting.future.cancel()

    def take(self, finals: int, files: int, partials: int) -> list[Waiting]:
        """The next batch: live finals (speculative ones too), else file finals, else partials; at most
        that many of the kind taken."""
        batch = _take_finals(self._finals, finals)
        if len(batch) < finals and self._speculative:    # same kind of decode: same batch
            batch += _take_oldest(self._speculative, finals - len(batch))
        if batch:
            return batch
        if self._background and (self._background_turn or not self._partials):
            self._background_turn = False
            if batch := _take_finals(self._background, files):
                return batch
        self._background_turn = True
        return _take_oldest(self._partials, partials)


def _take_oldest(lanes: dict[Lane, Waiting], limit: int) -> list[Waiting]:
    """By deadline: the most urgent kind first (a first partial before
    refreshes), the longest waiting first within it."""
    batch = []
    for lane in sorted(lanes, key=lambda k: (lanes[k].job.priority, lanes[k].since))[:limit]:
        waiting = lanes.pop(lane)
        if not waiting.future.done():
            batch.append(waiting)
    return batch


def _take_finals(queue: deque[Waiting], limit: int) -> list[Waiting]:
    batch: list[Waiting] = []
    while queue and len(batch) < limit:
        waiting = queue.popleft()
        if not waiting.future.done():
            batch.append(waiting)
    return batch
