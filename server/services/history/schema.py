"""The history's schema, on both databases: one list of migrations, each
written once, with per-dialect statements only where SQLite and PostgreSQL
differ. Adding a migration is appending one `Migration` to MIGRATIONS."""

from __future__ import annotations

from typing import NamedTuple


class Dialects(NamedTuple):
    """A statement written per database, where they differ (an empty one: none there)."""
    sqlite: str = ""
    postgres: str = ""


# Column types that differ, as placeholders in the statements both run.
TYPES = {
    "sqlite": {"{rowid}": "INTEGER PRIMARY KEY", "{real}": "REAL", "{bigint}": "INTEGER"},
    "postgres": {"{rowid}": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "{real}": "DOUBLE PRECISION",
                 "{bigint}": "BIGINT"},
}


class Migration:
    """One schema step, written once: its statements in order, each SQL that both
    databases run (with TYPES' placeholders) or Dialects where they differ."""

    def __init__(self, *statements: str | Dialects):
        self.statements = statements

    def script(self, dialect: str) -> str:
        sql = "\n".join(getattr(s, dialect) if isinstance(s, Dialects) else s for s in self.statements)
        for placeholder, column_type in TYPES[dialect].items():
            sql = sql.replace(placeholder, column_type)
        return sql

    @property
    def sqlite(self) -> str:
        return self.script("sqlite")

    @property
    def postgres(self) -> str:
        return self.script("postgres")


# Each entry moves the schema one version up, on both databases: one version
# number means one schema. Append, never edit: databases in the field ran the
# old ones (SQLite records how many in PRAGMA user_version, PostgreSQL in
# lingting_schema).
MIGRATIONS: list[Migration] = [
    Migration(
        """
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,              -- stream | file
        started_at  {real} NOT NULL,              -- unix seconds
        ended_at    {real},
        status      TEXT NOT NULL,              -- open | stopped | disconnected | shutdown | interrupted | failed
        model       TEXT,
        language    TEXT,
        filename    TEXT,
        audio_ms    {bigint} NOT NULL DEFAULT 0,
        client      TEXT NOT NULL DEFAULT '{}', -- JSON: address, user agent, origin, subprotocol
        settings    TEXT NOT NULL DEFAULT '{}'  -- JSON: the start message as accepted
    );
    CREATE INDEX sessions_started ON sessions(started_at);
    CREATE TABLE utterances (
        id          {rowid},
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        start_ms    {bigint} NOT NULL,
        end_ms      {bigint} NOT NULL,
        text        TEXT NOT NULL,
        raw_text    TEXT NOT NULL,
        language    TEXT,
        words       TEXT,                       -- JSON list or NULL
        hotwords    TEXT NOT NULL DEFAULT '[]', -- JSON list of the hotwords in force
        created_at  {real} NOT NULL,
        UNIQUE (session_id, idx)
    );""",
        # Substring search that works for Chinese and Japanese too, which have
        # no spaces for a word tokenizer to split on: trigrams on both.
        Dialects(sqlite="""
    CREATE VIRTUAL TABLE utterances_fts USING fts5(
        text, raw_text, content='utterances', content_rowid='id', tokenize='trigram');
    CREATE TRIGGER utterances_ai AFTER INSERT ON utterances BEGIN
        INSERT INTO utterances_fts(rowid, text, raw_text) VALUES (new.id, new.text, new.raw_text);
    END;
    CREATE TRIGGER utterances_ad AFTER DELETE ON utterances BEGIN
        INSERT INTO utterances_fts(utterances_fts, rowid, text, raw_text)
        VALUES ('delete', old.id, old.text, old.raw_text);
    END;""", postgres="""
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX utterances_text_trgm ON utterances USING gin (text gin_trgm_ops);
    CREATE INDEX utterances_raw_text_trgm ON utterances USING gin (raw_text gin_trgm_ops);"""),
    ),
    # Tenancy: the API key (its name) that created the session. Sessions from
    # before, and from servers without keys, have none: only admins and
    # keyless (local) servers see them.
    Migration("""
    ALTER TABLE sessions ADD COLUMN owner TEXT;
    CREATE INDEX sessions_owner ON sessions(owner, started_at);"""),
    # Streams of several channels (a call's agent and customer): who said it.
    Migration("""
    ALTER TABLE utterances ADD COLUMN channel INTEGER;
    ALTER TABLE utterances ADD COLUMN speaker TEXT;
    ALTER TABLE sessions ADD COLUMN signals TEXT NOT NULL DEFAULT '[]';  -- JSON: DTMF keys, marks"""),
    # Webhooks: the outbox. A delivery is stored with the final (or alert, or
    # end) it carries, before the client hears of it, and stays until the
    # receiver has it; a restart resumes what is pending.
    Migration("""
    CREATE TABLE webhook_deliveries (
        id           {rowid},
        delivery_id  TEXT NOT NULL UNIQUE,      -- the receiver's idempotency key
        session_id   TEXT NOT NULL,
        url          TEXT NOT NULL,
        secret       TEXT NOT NULL,
        event        TEXT NOT NULL,             -- final | alert | session_end
        body         TEXT NOT NULL,             -- JSON, as sent
        status       TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed | refused
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      {real} NOT NULL,
        last_status  INTEGER,                   -- the receiver's HTTP status
        last_error   TEXT,
        created_at   {real} NOT NULL,
        delivered_at {real}
    );
    CREATE INDEX webhook_pending ON webhook_deliveries(status, url, id);
    CREATE INDEX webhook_session ON webhook_deliveries(session_id);"""),
    # Speaker labels (diarize): an utterance's turns when its speaker changed
    # part-way, and the names a user gave the labels ("S1" -> "Dr. Chen").
    Migration("""
    ALTER TABLE utterances ADD COLUMN turns TEXT;          -- JSON list of {speaker, start_ms, end_ms, text} or NULL
    ALTER TABLE sessions ADD COLUMN speaker_names TEXT NOT NULL DEFAULT '{}';   -- JSON: label -> name"""),
    # Several edges on one database (PostgreSQL): which edge holds a session
    # open, so a starting edge marks only a dead edge's sessions interrupted;
    # which edge drains a webhook URL's queue, until when; the secrets every
    # edge uses alike (the viewer-token key).
    Migration(
        """
    ALTER TABLE sessions ADD COLUMN edge TEXT;""",
        Dialects(postgres="""
    CREATE TABLE webhook_claims (url TEXT PRIMARY KEY, edge TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
    CREATE TABLE lingting_secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);"""),
    ),
    # Telephony signals (DTMF keys, marks) as rows: the JSON column was
    # rewritten whole at each one, a cost that grew with all before it.
    Migration(
        """
    CREATE TABLE session_signals (
        id          {rowid},
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        body        TEXT NOT NULL               -- JSON: the event as sent
    );
    CREATE INDEX session_signals_session ON session_signals(session_id, id);""",
        Dialects(sqlite="""
    INSERT INTO session_signals (session_id, body)
        SELECT s.id, j.value FROM sessions s, json_each(s.signals) j ORDER BY s.id, j.key;""", postgres="""
    INSERT INTO session_signals (session_id, body)
        SELECT s.id, e.value::text FROM sessions s,
            jsonb_array_elements(CAST(s.signals AS jsonb)) WITH ORDINALITY AS e(value, n) ORDER BY s.id, e.n;"""),
        """
    ALTER TABLE sessions DROP COLUMN signals;""",
    ),
    # A webhook's signing secret is kept only while its delivery is pending:
    # the ones finished before this version still held theirs.
    Migration("""
    UPDATE webhook_deliveries SET secret = '' WHERE status != 'pending';"""),
]
