"""Log setup shared by the server and its model worker, and the one
redaction every log record goes through (RedactSecrets, on the handler)."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import unquote_plus

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# A name that carries a secret, once percent-decoded and lower-cased (?api%5Fkey= is ?api_key= to Starlette):
# API keys, viewer tokens, webhook and Twilio secrets, database passwords, signatures.
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|signature|credential|^sig$")
_SCHEME = r"(?:(?:bearer|basic|token|digest|negotiate)\s+)?"     # Authorization: <scheme> <secret>
_END = r"""[^\s&'"#,;)\]}>]+"""
_PAIRS = [
    # ?name=value and &name=value (URLs), name=value (libpq conninfo: password=...)
    re.compile(rf"(?P<keep>(?:^|(?<=[?&;\s]))(?P<name>[\w.%~+\-]+)=)(?P<value>{_END})", re.I),
    # "name": "value", 'name', 'value' (JSON, dicts, header lists), b'name', b'value' (raw ASGI headers)
    re.compile(rf"""(?P<keep>["'](?P<name>[\w.%\-]+)["']\s*[:,]\s*b?["']{_SCHEME})(?P<value>[^"'\s]+)""", re.I),
    # Name: value (an HTTP header line): to the end of the value
    re.compile(rf"""(?P<keep>(?:^|(?<=[\s<>]))(?P<name>[\w\-]+):[ \t]*{_SCHEME})(?P<value>[^\s'"][^\r\n'"]*)""", re.I),
]


def _is_secret(name: str) -> bool:
    return _SECRET_NAME.search(unquote_plus(name).lower()) is not None


_USERINFO = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.\-]*://[^\s/@:]*:)[^\s/@]+(?=@)", re.I)
_CREDENTIALS = re.compile(r"(?P<keep>\bbearer\s+|lingting\.key\.|openai-insecure-api-key\.)[^\s'\",;)\]]+", re.I)


def redact(text: str, mask: str = REDACTED) -> str:
    """The text without the secrets it may hold: in URLs (query parameters,
    userinfo passwords), headers, JSON, conninfo strings and subprotocols."""
    for pattern in _PAIRS:
        text = pattern.sub(lambda m: m.group("keep") + mask if _is_secret(m.group("name")) else m.group(0), text)
    text = _USERINFO.sub(lambda m: m.group("keep") + mask, text)
    return _CREDENTIALS.sub(lambda m: m.group("keep") + mask, text)


def _frame_summary(arg):
    """A WebSocket data frame (websockets logs every one at DEBUG, with the
    start and end of its text) as its type and size: payloads carry keys
    (Twilio's start event), webhook secrets (a start message) and speech."""
    opcode, data = getattr(arg, "opcode", None), getattr(arg, "data", None)
    if isinstance(data, (bytes, bytearray)) and getattr(opcode, "name", None) in ("TEXT", "BINARY", "CONT"):
        return f"{opcode.name} [{len(data)} bytes]"
    return arg


_TRACEBACKS = logging.Formatter()


class RedactSecrets(logging.Filter):
    """No secret reaches a log line: uvicorn logs a WebSocket's path with its
    query (?api_key=, ?token=), the edge logs offered subprotocols
    (lingting.key.KEY) at DEBUG, websockets logs frames, a failing database
    connection may log its URL, an exception's message may hold any of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_frame_summary(arg) for arg in record.args)
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:     # formatted here, so the formatter prints the redacted text
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """text: for people; json: one object per line for log pipelines, with
    `session` on every line logged for a stream."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                                           rename_fields={"levelname": "level", "asctime": "time", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":   # one line per HTTP request is noise
        logging.getLogger("websockets").setLevel(logging.WARNING)
