"""No API key reaches a log line, wherever a client put it."""

import json
import logging
import sys

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


SECRET = "s3cr3t-" + "q" * 20


def test_every_secret_named_in_a_query_is_redacted_however_it_is_spelled():
    """Starlette decodes parameter names (?api%5Fkey= is ?api_key=): so does the redaction."""
    for line in (f'127.0.0.1:1 - "WebSocket /v1/stream?api%5Fkey={SECRET}" [accepted]',
                 f"GET /v1/rooms/hall/events?token={SECRET}&x=1", f"/v1/twilio?%61pi_key={SECRET}",
                 f"/x?lang=en&access_token={SECRET}", f"/x?Password={SECRET}", f"/x?auth={SECRET}",
                 f"/x?secret={SECRET}#frag", f"/x?key={SECRET}", f"session s1: WebSocket /v1/stream?token={SECRET}"):
        assert SECRET not in redact(line), line
    assert redact("/v1/stream?language=en&room=hall") == "/v1/stream?language=en&room=hall"


def test_passwords_in_database_urls_and_conninfo_are_redacted():
    for line in (f"cannot open postgresql://edge:{SECRET}@db.internal:5432/lingting",
                 f"postgresql://db.internal/lingting?user=edge&password={SECRET}&sslmode=require",
                 f"connection failed: host=db user=edge password={SECRET} dbname=x",
                 f"ray://admin:{SECRET}@head:10001"):
        clean = redact(line)
        assert SECRET not in clean and ("edge" in clean or "admin" in clean), line
    assert redact("see https://example.com/a:b@c") == "see https://example.com/a:b@c"   # no userinfo there


def test_authorization_headers_of_every_scheme_and_signatures_are_redacted():
    for line in (f"Authorization: Basic {SECRET}", f"Authorization: Token {SECRET}", f"bearer {SECRET}",
                 f"X-Twilio-Signature: {SECRET}", f"x-lingting-signature: t=1,v1={SECRET}",
                 f"[(b'authorization', b'Bearer {SECRET}')]", f'{{"api_key": "{SECRET}"}}',
                 f'"customParameters":{{"api_key":"{SECRET}"}}'):
        assert SECRET not in redact(line), line


def test_frame_logs_keep_the_type_and_size_not_the_payload():
    """websockets logs each frame at DEBUG with the start and end of its text:
    a Twilio start event's api_key, a webhook secret in a start message."""
    from websockets.frames import Frame, Opcode
    text = json.dumps({"event": "start", "start": {"customParameters": {"api_key": SECRET}}}).encode()
    for frame in (Frame(Opcode.TEXT, text), Frame(Opcode.BINARY, b"\x00" * 10 + SECRET.encode())):
        record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, "< %s", (frame,), None)
        assert RedactSecrets().filter(record)
        assert SECRET[-19:] not in record.getMessage() and f"{len(frame.data)} bytes" in record.getMessage()
        assert record.getMessage().startswith(f"< {frame.opcode.name}")


def test_a_traceback_is_redacted_too():
    try:
        raise ValueError(f"cannot connect to postgresql://edge:{SECRET}@db/x")
    except ValueError:
        record = logging.LogRecord("lingting", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert RedactSecrets().filter(record)
    assert SECRET not in logging.Formatter().format(record)


def test_print_config_shows_secrets_as_stars(capsys, monkeypatch):
    from lingting_server.__main__ import main
    monkeypatch.setenv("LINGTING_TWILIO_AUTH_TOKEN", SECRET)
    assert main(["--print-config", "--history-db", f"postgresql://edge:{SECRET}@db/x?password={SECRET}",
                 "--webhook-secret", SECRET, "--webhook", f"https://hooks.example/in?token={SECRET}"]) == 0
    shown = capsys.readouterr().out
    assert SECRET not in shown and 'webhook_secret = "***"' in shown and 'twilio_auth_token = "***"' in shown
    assert "postgresql://edge:***@db/x" in shown


def test_a_failing_itn_logs_neither_the_transcript_nor_its_exception_message(monkeypatch, caplog):
    from lingting_server.text import itn

    class Broken:
        def normalize(self, text):
            raise ValueError(f"cannot parse {text!r}")
    monkeypatch.setattr(itn, "_normalizer", lambda language: Broken())
    said = "my card number is four one one one"
    with caplog.at_level(logging.DEBUG, "lingting.itn"):
        assert itn.inverse_normalize(said, "en") == said
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") + str(r.exc_text or "") for r in caplog.records)
    assert "ITN failed" in logged and "ValueError" in logged and "four" not in logged
