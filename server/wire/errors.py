"""The one vocabulary of error codes: in WebSocket `error` events, in HTTP
error bodies ({"error": code, "message": ...}) and in close reasons."""

from __future__ import annotations

from .events import Error


class ErrorCode:
    # A client's message or audio
    BAD_MESSAGE = "bad_message"          # not JSON/msgpack, not a map, unknown type
    INVALID_FIELD = "invalid_field"      # a field with a wrong type or value
    NOT_STARTED = "not_started"          # audio/flush before start
    NO_SPEECH = "no_speech"              # a commit (OpenAI realtime) with no utterance open
    ALREADY_STARTED = "already_started"
    BAD_AUDIO = "bad_audio"              # an undecodable frame or file
    UNSUPPORTED = "unsupported"          # sample rate, language the model lacks
    TOO_LARGE = "too_large"
    # The server's side of a stream
    OVERLOADED = "overloaded"            # at a stream or disk limit: retry later
    SHUTTING_DOWN = "shutting_down"
    DECODE_FAILED = "decode_failed"
    HISTORY_FAILED = "history_failed"    # the transcript was sent but could not be stored
    IDLE_TIMEOUT = "idle_timeout"        # no message for too long while streaming
    QUOTA_EXCEEDED = "quota_exceeded"    # the API key's audio minutes are spent
    TOO_SLOW = "too_slow"                # the client reads events slower than they come
    ROOM_TAKEN = "room_taken"            # start.room names a room another live stream of the tenant has
    OUTPUT_FAILED = "output_failed"      # a caption output could not deliver (non-fatal: recognition goes on)
    OUTPUT_REFUSED = "output_refused"    # a webhook or caption target on a private address (see --webhook-allow-private)
    INTERNAL = "internal"
    # Admission (HTTP status codes with them)
    UNAUTHORIZED = "unauthorized"        # 401
    FORBIDDEN_ORIGIN = "forbidden_origin"  # 403
    FORBIDDEN_HOST = "forbidden_host"    # 421: DNS rebinding guard
    BAD_SIGNATURE = "bad_signature"      # 403: a platform's request signature (X-Twilio-Signature) does not match
    IP_LIMIT = "ip_limit"                # 429
    KEY_LIMIT = "key_limit"              # 429
    NOT_FOUND = "not_found"              # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    UPGRADE_REQUIRED = "upgrade_required"      # 426
    HISTORY_DISABLED = "history_disabled"      # 404: started with --history-db off
    MODEL_NOT_FOUND = "model_not_found"        # 404: OpenAI's API names a model this server does not run


class ProtocolError(Exception):
    """Something a client sent (or caused) that the server answers with an
    `error` event; fatal ones end the stream."""

    def __init__(self, code: str, message: str, fatal: bool = False):
        super().__init__(message)
        self.code, self.message, self.fatal = code, message, fatal

    def event(self) -> Error:
        return Error(self.code, self.message, self.fatal)


def require(ok: bool, message: str) -> None:
    """A client's field must satisfy `ok`; otherwise an `invalid_field` error saying why."""
    if not ok:
        raise ProtocolError(ErrorCode.INVALID_FIELD, message)
