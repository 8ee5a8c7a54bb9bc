"""Log setup shared by the server and its model worker."""

from __future__ import annotations

import logging
import re
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# Every place a client can put its API key (access.presented_key), as it
# shows in a logged URL, header or header list.
_SECRETS = re.compile(
    r"(?P<keep>(?:[?&]api_key=)|lingting\.key\.|openai-insecure-api-key\.|(?:authorization['\"]?[:,=]\s*['\"]?bearer\s+)"
    r"|(?:x-api-key['\"]?[:,=]\s*['\"]?))[^\s&'\",;)\]]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: m.group("keep") + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Keys never reach a log line: uvicorn logs a WebSocket's path with its
    query (?api_key=...), the edge logs offered subprotocols (lingting.key.KEY)
    at DEBUG, and a failing request may log its URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
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
