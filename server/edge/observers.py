"""A stream's outputs, as sinks (sinks.py): history (stored before sent, with
the webhook deliveries that carry it), metrics and the room; captions.py holds
the caption outputs. `sinks_for` builds them all, `check_outputs` is what a start
must pass for them. They see typed events, never the edge's internals."""

from __future__ import annotations

import dataclasses
import logging
import time

from ..wire.errors import ErrorCode, ProtocolError
from ..services.history.store import AsyncHistory
from ..services.metrics import Metrics
from ..protocols.messages import StartConfig
from ..services.rooms import Room, Rooms
from ..wire import events
from ..wire.audio import samples_to_ms as ms
from ..streaming.session import Session
from .captions import CaptionOutputs
from .outbound import literal_refusal
from .sinks import Sink, StreamInfo, StreamServices
from .webhooks import deliveries, session_end_payload

log = logging.getLogger("lingting.server")

# A stream's DTMF keys and marks share the one history writer with every
# tenant's finals: they are written at most once a second a stream (the first
# at once, the rest in one batch), and before its next final and at its end.
SIGNAL_BATCH_S = 1.0


def sinks_for(info: StreamInfo, services: StreamServices, report) -> list[Sink]:
    """A stream's outputs, in the order each event reaches them: history first
    (a final is stored before anything else sees it), then metrics, captions and
    the room; closed in the reverse order. Each reads the start config when the
    stream opens. report(ProtocolError): a caption output's problem, for the speaker."""
    return [HistoryRecorder(services.history, info, services.webhook_targets, services.webhook_sender,
                            services.metrics.history_writes),
            MetricsObserver(services.metrics, info.session),
            CaptionOutputs(info.session, services.outputs.webhook_allow_private, report, services.metrics),
            RoomSink(services.rooms, info)]


def check_outputs(config: StartConfig, owner: str | None, services: StreamServices) -> None:
    """What the edge must allow before a start is taken: its room name, a speaker
    model for diarize, its outputs' targets (ProtocolError if not)."""
    if config.mode == "stream":
        services.rooms.check_free(owner, config.room)
    if config.diarize and not services.speaker_model:
        raise ProtocolError(ErrorCode.UNSUPPORTED, "this server has no speaker model for diarize (install the "
                                                   "diarize extra: pip install -e '.[diarize]'; see "
                                                   "--speaker-model)")
    if config.webhooks and services.history is None:
        raise ProtocolError(ErrorCode.UNSUPPORTED, "webhooks need the history database (their outbox), and "
                                                   "this server keeps none (--history-db off)")
    for target in (*config.webhooks, *config.captions):
        if (refusal := literal_refusal(target.url, services.outputs.webhook_allow_private)) is not None:
            raise refusal


class HistoryRecorder(Sink):
    """The session's row at `ready`, each final before the client gets it, the
    end at `stopped` (or, without one, when the connection is over); DTMF keys
    and marks in batches (SIGNAL_BATCH_S)."""

    def __init__(self, history: AsyncHistory | None, info: StreamInfo, server_webhooks=(), webhook_sender=None,
                 write_seconds=None):
        self.history = history
        self.server_webhooks = tuple(server_webhooks)      # --webhook: every stream's
        self.webhook_sender = webhook_sender
        self.write_seconds = write_seconds                 # a histogram: how long storing a final takes
        self.info = info
        self.session = info.session
        self.recorded = False          # the session has a row
        self.ended = False             # ...and its end
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
            started = time.perf_counter()
            await self._store_signals()
            wire = event.to_wire()
            outbox = self._deliveries("final", {"room": self.room, "event": wire})
            await self._write(self.history.add_utterance(session.id, wire, list(event.hotwords), outbox))
            self._stored(bool(outbox))
            if self.write_seconds is not None:
                self.write_seconds.observe(time.perf_counter() - started)
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

    async def closed(self, outcome: str | None) -> None:
        await self.close()

    @property
    def client(self) -> dict:
        return self.info.client

    @property
    def owner(self) -> str | None:
        return self.info.owner

    async def close(self) -> None:
        if self.recorded and not self.ended:
            self.ended = True
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


class MetricsObserver(Sink):
    def __init__(self, metrics: Metrics, session: Session):
        self.metrics = metrics
        self.session = session
        self.ended_at: dict[int, float] = {}   # utterance -> when its end went out

    async def observe(self, event: events.Event) -> None:
        if isinstance(event, events.Error):
            self.metrics.errors.labels(event.code).inc()
        elif isinstance(event, events.SpeechEnded):
            self.ended_at[event.utterance] = time.monotonic()
        elif isinstance(event, events.Final):
            self.metrics.finals.labels(self.session.mode).inc()
            ended = self.ended_at.pop(event.utterance, None)
            if ended is not None:
                self.metrics.final_latency.observe(time.monotonic() - ended)


class RoomSink(Sink):
    """A live stream's room: opened with its start (its name was checked free in
    the same step), every shared event to its viewers, closed with the stream."""

    def __init__(self, rooms: Rooms, info: StreamInfo):
        self.rooms = rooms
        self.info = info
        self.room: Room | None = None

    def opened(self, ready: events.Ready) -> events.Ready | None:
        if ready.room is None:
            return None
        session, config = self.info.session, self.info.session.config
        self.room = self.rooms.open(session.id, self.info.owner, config.room, {
            "mode": config.mode, "language": config.language, "model": session.model,
            "channels": ready.channels and list(ready.channels), "protocol": self.info.client.get("subprotocol"),
            "countdown": config.countdown})
        return dataclasses.replace(ready, viewer_token=self.room.token)

    async def observe(self, event: events.Event) -> None:
        if self.room is not None:
            self.rooms.publish(self.room, event)

    def speaker_left(self) -> None:
        if self.room is not None:
            self.rooms.speaker_left(self.room)

    async def closed(self, outcome: str | None) -> None:
        if self.room is not None:
            self.rooms.close(self.room, outcome)
