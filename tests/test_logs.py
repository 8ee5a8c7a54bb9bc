"""No API key reaches a log line, wherever a client put it."""

import logging

from lingting_server.logs import RedactSecrets, redact

KEY = "agents-" + "a" * 24


def test_keys_are_redacted_from_urls_and_headers():
    for line in (f"< GET /v1/history/search?q=x&api_key={KEY} HTTP/1.1",
                 f"< Sec-WebSocket-Protocol: lingting.v1.json, lingting.key.{KEY}",
                 f"< Authorization: Bearer {KEY}", f"< X-API-Key: {KEY}",
                 f"headers=[('Authorization', 'Bearer {KEY}'), ('x-api-key', '{KEY}')]"):
        assert KEY not in redact(line) and "[redacted]" in redact(line), line
    assert redact("/v1/history/search?q=api_key") == "/v1/history/search?q=api_key"


def test_the_filter_rewrites_the_record_before_any_formatter_sees_it():
    record = logging.LogRecord("websockets", logging.DEBUG, __file__, 1, "> %s", (f"GET /?api_key={KEY}",), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "> GET /?api_key=[redacted]"
