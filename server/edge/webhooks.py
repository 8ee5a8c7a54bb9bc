"""Webhook delivery: what a stream's finals, alerts and end become in the
outbox (stored with the final, before the client hears it), and the sender
that drains the outbox.

Each URL gets its deliveries in order, one at a time; a failure holds that
URL's queue back with growing pauses (by default 0.5 s doubling to 30 s:
--webhook-retry-first-s, --webhook-retry-max-s) until the receiver answers
2xx, for up to a day (--webhook-give-up-s). 4xx answers other than 408 and 429
mean the receiver will never take it: that delivery fails and the next goes.
Every request carries the delivery's id (Idempotency-Key) so a receiver that
got one twice (its answer was lost) can tell."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass

import httpx

from ..services.history.store import AsyncHistory
from ..protocols.outputs import SIGNATURE_HEADER, WebhookTarget, sign
from . import outbound

log = logging.getLogger("lingting.webhooks")
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class RetrySchedule:
    """When a failed delivery is tried again (settings.py's OutputSettings has the defaults' reasons)."""
    first_s: float = 0.5
    max_s: float = 30.0
    give_up_s: float = 86400.0

    def delay(self, attempts: int) -> float:
        """The pause after `attempts` failures: doubling, capped, with jitter so receivers are not hit at once."""
        return min(self.max_s, self.first_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.0)


def deliveries(targets, kind: str, session_id: str, payload: dict) -> list[dict]:
    """Outbox rows for one event, to each target that wants its kind."""
    rows = []
    for target in targets:
        if kind not in target.events:
            continue
        delivery_id = uuid.uuid4().hex
        body = {"id": delivery_id, "type": kind, "session_id": session_id, "created_at": round(time.time(), 3),
                **payload}
        rows.append({"delivery_id": delivery_id, "session_id": session_id, "url": target.url,
                     "secret": target.secret, "event": kind,
                     "body": json.dumps(body, ensure_ascii=False, separators=(",", ":"))})
    return rows


def session_end_payload(room: str | None, status: str, audio_ms: int, transcript: list[dict]) -> dict:
    return {"room": room, "status": status, "audio_ms": audio_ms, "utterances": transcript,
            "text": " ".join(u["text"] for u in transcript if u["text"])}


def server_targets(urls, secret: str | None, kinds) -> tuple[WebhookTarget, ...]:
    """--webhook URL (repeatable), signed with --webhook-secret (Settings.validate() checked them)."""
    return tuple(WebhookTarget(url, secret, frozenset(kinds)) for url in urls)


class WebhookSender:
    """Drains the outbox: due deliveries, each URL in order."""

    def __init__(self, history: AsyncHistory, allow_private: bool = False, metrics=None,
                 retry: RetrySchedule = RetrySchedule()):
        self.history = history
        self.retry = retry
        self.allow_private = allow_private
        self.metrics = metrics
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None
        self._in_flight: set[str] = set()      # URLs with a delivery under way
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._http = outbound.client()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stored(self) -> None:
        """New deliveries are in the outbox."""
        self.wake.set()

    async def close(self) -> None:
        """Stop sending; an attempt cut short stays pending in the outbox (sent again after a restart)."""
        for task in (self._task, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._task, *self._tasks):
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self._http:
            await self._http.aclose()

    async def _run(self) -> None:
        """Each URL's oldest pending delivery, when due, on a task of its own:
        a slow receiver holds up only its own queue."""
        while True:
            self.wake.clear()
            try:
                heads = await self.history.pending_heads()
            except Exception:
                log.exception("webhook outbox: cannot read it")
                heads = []
            now, wait = time.time(), self.retry.max_s
            for row in heads:
                if row["url"] in self._in_flight:
                    continue
                if row["next_at"] > now:
                    wait = min(wait, row["next_at"] - now)
                    continue
                self._in_flight.add(row["url"])
                task = asyncio.get_running_loop().create_task(self._deliver(row))
                self._tasks.add(task)
                task.add_done_callback(lambda done, url=row["url"]: self._delivered(done, url))
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _delivered(self, task: asyncio.Task, url: str) -> None:
        self._tasks.discard(task)
        self._in_flight.discard(url)
        self.wake.set()         # that URL's next delivery may go now

    async def _deliver(self, row: dict) -> None:
        attempts = row["attempts"] + 1
        body = row["body"].encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Lingting-Webhooks/1",
                   SIGNATURE_HEADER: sign(row["secret"], body), "Idempotency-Key": row["delivery_id"],
                   "X-Lingting-Delivery": row["delivery_id"], "X-Lingting-Event": row["event"]}
        status_code, error = None, None
        try:
            response = await outbound.request(self._http, "POST", row["url"], self.allow_private,
                                              content=body, headers=headers)
            status_code = response.status_code
            if 200 <= status_code < 300:
                outcome = "delivered"
            elif 400 <= status_code < 500 and status_code not in (408, 429):
                outcome, error = "failed", f"the receiver refused it: HTTP {status_code}"
            else:
                outcome, error = "pending", f"HTTP {status_code}"
        except outbound.TargetRefused as exc:
            outcome, error = "refused", str(exc)
        except httpx.HTTPError as exc:
            outcome, error = "pending", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if outcome == "pending" and time.time() - row["created_at"] > self.retry.give_up_s:
            outcome = "failed"
        delay = self.retry.delay(attempts)
        if outcome != "delivered":
            log.warning("webhook %s to %s (%s): attempt %d: %s%s", row["delivery_id"], row["url"], row["event"],
                        attempts, error, f"; retry in {delay:.1f} s" if outcome == "pending" else "")
        if self.metrics is not None:
            self.metrics.webhooks.labels(outcome).inc()
        try:
            await self.history.delivery_attempted(row["id"], outcome, attempts, time.time() + delay, status_code,
                                                  (error or "")[:MAX_ERROR_CHARS] or None)
        except Exception:
            log.exception("webhook outbox: cannot record delivery %s", row["delivery_id"])
