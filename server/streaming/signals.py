"""DTMF keys and marks: telephony events a stream's client sends, given back on
the stream's clock. Each one is stored with the stream's history, so a stream
takes only so many (--max-signals); PCI redaction withholds a key (a caller may
be typing a card number)."""

from __future__ import annotations

from ..protocols.messages import Dtmf, Mark, StartConfig
from ..wire import events
from ..wire.errors import ErrorCode, ProtocolError
from .channels import speaker_of
from .commands import Output

MAX_SIGNALS = 1000     # DTMF keys and marks kept per stream unless limits say (--max-signals)


class Signals:
    def __init__(self, cap: int = MAX_SIGNALS):
        self.cap = cap
        self.taken = 0

    def take(self, message: Dtmf | Mark, stream, config: StartConfig, at_ms: int) -> Output:
        """The event for this key or mark, heard at at_ms of the stream's audio."""
        self.taken += 1
        if self.taken > self.cap:
            # Said once, not fatal: a long call's transcript matters more than its marks, and a
            # platform that keeps sending should not close the call through max_errors.
            return Output() if self.taken > self.cap + 1 else Output().send(ProtocolError(
                ErrorCode.TOO_LARGE, f"this stream has sent {self.cap} DTMF keys and marks, this server's limit "
                "(--max-signals): later ones are dropped, not sent or stored").event())
        if isinstance(message, Mark):
            return Output().send(events.Mark(message.name, at_ms))
        channel, speaker = speaker_of(stream, message.channel)
        withheld = bool(config.redact & {"pci", "numbers"})
        return Output().send(events.Dtmf(None if withheld else message.digit, at_ms, channel, speaker, withheld))
