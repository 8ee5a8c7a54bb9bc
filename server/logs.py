"""Log setup shared by the server and its model worker."""

from __future__ import annotations

import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":   # one line per HTTP request is noise
        logging.getLogger("websockets").setLevel(logging.WARNING)
