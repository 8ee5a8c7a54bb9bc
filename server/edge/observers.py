"""What watches a stream's events on their way out: history (stored before
sent) and metrics. They see typed events, never the edge's internals."""

from __future__ import annotations

import logging
import time

from ..errors import ErrorCode, ProtocolError
from ..history import AsyncHistory
from ..metrics import Metrics
from ..streaming import events
from ..streaming.audio import samples_to_ms as ms
from ..streaming.session import Session
from .webhooks import deliveries, session_end_payload

log = logging.getLogger("lingting.server")

# A stream's DTMF keys and marks share the one history writer with every
# tenant's finals: they are written at most once a second a stream (the first
# at once, the rest in one batch), and before its next final and at its end.
SIGNAL_BATCH_S = 1.0


class HistoryRecorder:
    """The session's row at `ready`, each final before the client gets it, the
    end at `stopped` (or, without one, when the connection is over); DTMF keys
    and marks in batches (SIGNAL_BATCH_S)."""

    def __init__(self, history: AsyncHistory | None, session: Session, client: dict, owner: str | None,
                 server_webhooks=(), webhook_sender=None):
        self.history = history
        self.server_webhooks = tuple(server_webhooks)      # --webhook: every stream's
        self.webhook_sender = webhook_sender
        self.session = session
        self.client = client
        self.owner = owner
        self.recorded = False          # the session has a row
        self.closed = False            # ...and its end
        self.failed = False
        self._untold: ProtocolError | None = None   # a failure the client has not heard of yet
        self._signals: list[dict] = []                # DTMF keys and marks not yet stored
        self._signals_at = float("-inf")              # when the last batch of them was

    async def observe(self, event: events.Event) -> ProtocolError | None:
        """Store what needs storing; an error to tell the client, the first time storing fails."""
        if self.history is None:
            return None
        session = self.session
        if isinstance(event, events.Ready):
            config = session.config
            self.recorded = await self._write(self.history.open_session(
                session.id, "file" if session.offline else "stream", model=session.model, language=config.language,
                filename=config.filename, client=self.client, settings=config.summary(), owner=self.owner))
        elif isinstance(event, events.Final) and self.recorded:
            await self._store_signals()
            wire = event.to_wire()
            outbox = self._deliveries("final", {"room": self.room, "event": wire})
            await self._write(self.history.add_utterance(session.id, wire, list(event.hotwords), outbox))
            self._stored(bool(outbox))
        elif isinstance(event, events.Alert) and self.recorded:
            outbox = self._deliveries("alert", {"room": self.room, "event": event.to_wire()})
            if outbox:
                await self._write(self.history.add_deliveries(outbox))
                self._stored(True)
        elif isinstance(event, events.Speakers) and self.recorded:
            await self._write(self.history.set_speakers(session.id, list(event.segments)))
        elif isinstance(event, (events.Dtmf, events.Mark)) and self.recorded:
            self._signals.append(event.to_wire())
            if time.monotonic() - self._signals_at >= SIGNAL_BATCH_S:
                await self._store_signals()
        elif isinstance(event, events.Stopped) and self.recorded:
            await self.close()        # complete in history before the client hears `stopped`
        error, self._untold = self._untold, None
        return error

    async def close(self) -> None:
        if self.recorded and not self.closed:
            self.closed = True
            await self._store_signals()
            status, audio_ms = self.session.outcome or "disconnected", ms(self.session.audio_samples)
            if any("session_end" in t.events for t in self.targets):
                await self._write(self.history.add_session_end(self.session.id, lambda transcript: self._deliveries(
                    "session_end", session_end_payload(self.room, status, audio_ms, transcript))))
                self._stored(True)
            await self._write(self.history.close_session(self.session.id, status, audio_ms))

    async def _store_signals(self) -> None:
        if self._signals:
            batch, self._signals = self._signals, []
            self._signals_at = time.monotonic()
            await self._write(self.history.add_signals(self.session.id, batch))

    # ---- webhooks: stored here, with what they carry; sent by the WebhookSender
    @property
    def targets(self) -> tuple:
        config = self.session.config
        return self.server_webhooks + (tuple(config.webhooks) if config is not None else ())

    @property
    def room(self) -> str | None:
        config = self.session.config
        return (config.room or self.session.id) if config is not None and config.mode == "stream" else None

    def _deliveries(self, kind: str, payload: dict) -> list[dict]:
        return deliveries(self.targets, kind, self.session.id, {"owner": self.owner, **payload}) if self.targets else []

    def _stored(self, deliveries: bool) -> None:
        """New deliveries are in the outbox: the sender goes now, not at its next look."""
        if deliveries and self.webhook_sender is not None:
            self.webhook_sender.stored()

    async def _write(self, operation) -> bool:
        try:
            await operation
            return True
        except Exception as exc:
            # The transcript still goes to the client: losing it there too would be worse.
            log.error("session %s: history write failed: %s", self.session.id, exc)
            if not self.failed:     # said once
                self.failed = True
                self._untold = ProtocolError(ErrorCode.HISTORY_FAILED, f"could not store this session in history: {exc}")
            return False


class MetricsObserver:
    def __init__(self, metrics: Metrics, session: Session):
        self.metrics = metrics
        self.session = session
        self.ended_at: dict[int, float] = {}   # utterance -> when its end went out

    def observe(self, event: events.Event) -> None:
        if isinstance(event, events.Error):
            self.metrics.errors.labels(event.code).inc()
        elif isinstance(event, events.SpeechEnded):
            self.ended_at[event.utterance] = time.monotonic()
        elif isinstance(event, events.Final):
            self.metrics.finals.labels(self.session.mode).inc()
            ended = self.ended_at.pop(event.utterance, None)
            if ended is not None:
                self.metrics.final_latency.observe(time.monotonic() - ended)
