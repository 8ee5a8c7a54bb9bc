"""What a stream's runner and its outputs share: the `Sink` each output is
(history, metrics, captions, its room), whose stream it is (`StreamInfo`), and
the few services of the server a stream uses (`StreamServices`, a narrow view of
`app.Lingting`). The sinks themselves are built by `observers.sinks_for`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..services.access import AccessPolicy
from ..services.batching import BatchCollector
from ..wire.errors import ProtocolError
from ..services.history.store import AsyncHistory
from ..services.metrics import Metrics
from ..services.rooms import Rooms
from ..settings import LimitSettings, OutputSettings
from ..wire.events import Event, Ready
from ..streaming.session import Session
from ..services.uploads import SpoolBudget
from .webhooks import WebhookSender


class Sink(Protocol):
    """One output of a stream. Sinks subclass it, so what one does not need is a no-op."""

    def opened(self, ready: Ready) -> Ready | None:
        """The stream started (its `ready` is being queued; the start config is
        `session.config`): a changed ready (a viewer token), or None."""
        return None

    async def observe(self, event: Event) -> ProtocolError | None:
        """An event on its way to the client, before it is sent: a problem the
        client must hear of first (once), or None."""
        return None

    def speaker_left(self) -> None:
        """The client is gone; its last finals may still come."""

    async def closed(self, outcome: str | None) -> None:
        """The stream is over, every event written (outcome: what history records)."""


@dataclass
class StreamInfo:
    """Whose stream it is, as its sinks see it. Shared with the runner: a key
    shown in-stream names the owner after the sinks are built, and a codec adds
    a call's ids to client."""
    session: Session
    client: dict               # address, user_agent, origin, subprotocol (and a call's ids)
    owner: str | None = None   # the API key's name


@dataclass(frozen=True)
class StreamServices:
    """What a stream uses of the server, built once by `app.Lingting`."""
    collector: BatchCollector
    access: AccessPolicy
    authenticated: Callable    # (runner, key): a key shown in-stream admits it among the streams, or AccessDenied
    rooms: Rooms
    history: AsyncHistory | None
    metrics: Metrics
    limits: LimitSettings
    outputs: OutputSettings
    spool: SpoolBudget
    speaker_model: bool        # diarize is possible
    webhook_targets: tuple = ()      # --webhook: every stream's
    webhook_sender: WebhookSender | None = None     # nudged when deliveries are stored
