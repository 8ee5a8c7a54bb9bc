"""Transcript history in SQLite: sessions and their utterances, full-text
search, retention.

Plain synchronous code on one connection per thread; the server calls it
through `AsyncHistory`, which keeps writes on one thread (in order) and reads
on another, so a long search never holds up a final being stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Each entry moves the schema one version up; PRAGMA user_version records
# how many ran. Append, never edit: databases in the field ran the old ones.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,              -- stream | file
        started_at  REAL NOT NULL,              -- unix seconds
        ended_at    REAL,
        status      TEXT NOT NULL,              -- open | stopped | disconnected | shutdown | interrupted | failed
        model       TEXT,
        language    TEXT,
        filename    TEXT,
        audio_ms    INTEGER NOT NULL DEFAULT 0,
        client      TEXT NOT NULL DEFAULT '{}', -- JSON: address, user agent, origin, subprotocol
        settings    TEXT NOT NULL DEFAULT '{}'  -- JSON: the start message as accepted
    );
    CREATE INDEX sessions_started ON sessions(started_at);
    CREATE TABLE utterances (
        id          INTEGER PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        start_ms    INTEGER NOT NULL,
        end_ms      INTEGER NOT NULL,
        text        TEXT NOT NULL,
        raw_text    TEXT NOT NULL,
        language    TEXT,
        words       TEXT,                       -- JSON list or NULL
        hotwords    TEXT NOT NULL DEFAULT '[]', -- JSON list of the hotwords in force
        created_at  REAL NOT NULL,
        UNIQUE (session_id, idx)
    );
    -- trigram: substring search that works for Chinese and Japanese too,
    -- which have no spaces for a word tokenizer to split on.
    CREATE VIRTUAL TABLE utterances_fts USING fts5(
        text, raw_text, content='utterances', content_rowid='id', tokenize='trigram');
    CREATE TRIGGER utterances_ai AFTER INSERT ON utterances BEGIN
        INSERT INTO utterances_fts(rowid, text, raw_text) VALUES (new.id, new.text, new.raw_text);
    END;
    CREATE TRIGGER utterances_ad AFTER DELETE ON utterances BEGIN
        INSERT INTO utterances_fts(utterances_fts, rowid, text, raw_text)
        VALUES ('delete', old.id, old.text, old.raw_text);
    END;
    """,
    # Tenancy: the API key (its name) that created the session. Sessions from
    # before, and from servers without keys, have none: only admins and
    # keyless (local) servers see them.
    """
    ALTER TABLE sessions ADD COLUMN owner TEXT;
    CREATE INDEX sessions_owner ON sessions(owner, started_at);
    """,
    # Streams of several channels (a call's agent and customer): who said it.
    """
    ALTER TABLE utterances ADD COLUMN channel INTEGER;
    ALTER TABLE utterances ADD COLUMN speaker TEXT;
    ALTER TABLE sessions ADD COLUMN signals TEXT NOT NULL DEFAULT '[]';  -- JSON: DTMF keys, marks
    """,
    # Webhooks: the outbox. A delivery is stored with the final (or alert, or
    # end) it carries, before the client hears of it, and stays until the
    # receiver has it; a restart resumes what is pending.
    """
    CREATE TABLE webhook_deliveries (
        id           INTEGER PRIMARY KEY,
        delivery_id  TEXT NOT NULL UNIQUE,      -- the receiver's idempotency key
        session_id   TEXT NOT NULL,
        url          TEXT NOT NULL,
        secret       TEXT NOT NULL,
        event        TEXT NOT NULL,             -- final | alert | session_end
        body         TEXT NOT NULL,             -- JSON, as sent
        status       TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed | refused
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      REAL NOT NULL,
        last_status  INTEGER,                   -- the receiver's HTTP status
        last_error   TEXT,
        created_at   REAL NOT NULL,
        delivered_at REAL
    );
    CREATE INDEX webhook_pending ON webhook_deliveries(status, url, id);
    CREATE INDEX webhook_session ON webhook_deliveries(session_id);
    """,
    # Speaker labels (diarize): an utterance's turns when its speaker changed
    # part-way, and the names a user gave the labels ("S1" -> "Dr. Chen").
    """
    ALTER TABLE utterances ADD COLUMN turns TEXT;          -- JSON list of {speaker, start_ms, end_ms, text} or NULL
    ALTER TABLE sessions ADD COLUMN speaker_names TEXT NOT NULL DEFAULT '{}';   -- JSON: label -> name
    """,
    # Several edges on one database (PostgreSQL): which edge holds a session
    # open, so a starting edge marks only a dead edge's sessions interrupted.
    """
    ALTER TABLE sessions ADD COLUMN edge TEXT;
    """,
    # Telephony signals (DTMF keys, marks) as rows: the JSON column was
    # rewritten whole at each one, a cost that grew with all before it.
    """
    CREATE TABLE session_signals (
        id          INTEGER PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        body        TEXT NOT NULL               -- JSON: the event as sent
    );
    CREATE INDEX session_signals_session ON session_signals(session_id, id);
    INSERT INTO session_signals (session_id, body)
        SELECT s.id, j.value FROM sessions s, json_each(s.signals) j ORDER BY s.id, j.key;
    ALTER TABLE sessions DROP COLUMN signals;
    """,
    # A webhook's signing secret is kept only while its delivery is pending:
    # the ones finished before this version still held theirs.
    """
    UPDATE webhook_deliveries SET secret = '' WHERE status != 'pending';
    """,
]

SESSION_COLUMNS = ("id", "kind", "started_at", "ended_at", "status", "model", "language", "filename",
                   "audio_ms", "client", "settings", "owner", "speaker_names")
UTTERANCE_COLUMNS = ("idx", "start_ms", "end_ms", "text", "raw_text", "language", "words", "hotwords", "channel",
                     "speaker", "created_at", "turns")
DELIVERY_COLUMNS = ("delivery_id", "url", "event", "status", "attempts", "last_status", "last_error", "created_at",
                    "delivered_at")
DUE_COLUMNS = ("id", "delivery_id", "session_id", "url", "secret", "event", "body", "attempts", "created_at",
               "next_at")
_JSON_COLUMNS = {"client", "settings", "words", "hotwords", "turns", "speaker_names"}
MIN_FTS_QUERY = 3   # the trigram index needs three characters; shorter queries scan


class HistoryError(Exception):
    pass


# Reads take `tenant`: a key's name sees only that key's sessions; ALL_TENANTS
# (an admin key, or a server without keys) sees every session.
ALL_TENANTS = None
_OWNED = "(:tenant IS NULL OR s.owner = :tenant)"


@dataclass(frozen=True)
class Retention:
    max_age_days: float = 0      # 0: keep forever
    max_mb: float = 0            # 0: no size limit


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lingting" / "history.sqlite3"


def open_store(location: str | Path) -> "SqlHistory":
    """A SQLite file's path, or a postgresql:// URL (several edges share it)."""
    from .history_pg import PostgresHistory, is_postgres_url
    return PostgresHistory(str(location)) if is_postgres_url(str(location)) else HistoryStore(location)


def _row(columns, values) -> dict:
    row = dict(zip(columns, values))
    for key in _JSON_COLUMNS & row.keys():
        if row[key] is not None:
            row[key] = json.loads(row[key])
    return row


class SqlHistory:
    """What both backends share: every query here is plain SQL that SQLite and
    PostgreSQL both run, with :named parameters. A subclass gives the
    connection (one per thread), transactions, the schema and the few
    dialect-specific parts (search, retention, the webhook outbox)."""

    path: object
    edge: str | None = None            # the edge that opens sessions here (several share PostgreSQL)

    # ---- the dialect ------------------------------------------------------
    def _db(self): raise NotImplementedError

    def _transaction(self): raise NotImplementedError

    def _run(self, db, sql: str, params=()):
        """Execute one statement; a cursor (rowcount, fetchone, fetchall, iteration)."""
        return db.execute(sql, params)

    def _run_many(self, db, sql: str, rows: list) -> None:
        db.executemany(sql, rows)

    def shared_secret(self, name: str) -> bytes | None:
        """A secret all edges of this database share; None: one server has it alone."""
        return None

    def _one(self, sql: str, params=()):
        return self._run(self._db(), sql, params).fetchone()

    def _all(self, sql: str, params=()) -> list:
        return self._run(self._db(), sql, params).fetchall()

    # ---- writing --------------------------------------------------------
    def open_session(self, session_id: str, kind: str, *, model: str | None = None,
                     language: str | None = None, filename: str | None = None,
                     client: dict | None = None, settings: dict | None = None,
                     started_at: float | None = None, owner: str | None = None) -> None:
        self._run(self._db(),
                  "INSERT INTO sessions (id, kind, started_at, status, model, language, filename, client, settings,"
                  " owner, edge) VALUES (:id, :kind, :started_at, 'open', :model, :language, :filename, :client,"
                  " :settings, :owner, :edge)",
                  {"id": session_id, "kind": kind, "started_at": started_at or time.time(), "model": model,
                   "language": language, "filename": filename, "client": json.dumps(client or {}, ensure_ascii=False),
                   "settings": json.dumps(settings or {}, ensure_ascii=False), "owner": owner, "edge": self.edge})

    def add_utterance(self, session_id: str, final: dict, hotwords: list[str] = (),
                      deliveries: list[dict] = ()) -> None:
        """Store one final event (as sent to the client), and the webhook
        deliveries that carry it, in one transaction; committed on return."""
        with self._transaction() as db:
            self._run(db,
                      "INSERT INTO utterances (session_id, idx, start_ms, end_ms, text, raw_text, language, words,"
                      " hotwords, created_at, channel, speaker, turns) VALUES (:session_id, :idx, :start_ms, :end_ms,"
                      " :text, :raw_text, :language, :words, :hotwords, :created_at, :channel, :speaker, :turns)"
                      " ON CONFLICT (session_id, idx) DO NOTHING",
                      {"session_id": session_id, "idx": final["utterance"], "start_ms": final["start_ms"],
                       "end_ms": final["end_ms"], "text": final.get("text") or "",
                       "raw_text": final.get("raw_text") or "", "language": final.get("language"),
                       "words": json.dumps(final["words"], ensure_ascii=False) if final.get("words") else None,
                       "hotwords": json.dumps(list(hotwords), ensure_ascii=False), "created_at": time.time(),
                       "channel": final.get("channel"), "speaker": final.get("speaker"),
                       "turns": json.dumps(final["turns"], ensure_ascii=False) if final.get("turns") else None})
            self._add_deliveries(db, deliveries)

    def add_signals(self, session_id: str, signals: list[dict]) -> None:
        """Telephony events of the session (DTMF keys, marks), as sent: a row
        each, a batch in one transaction (one commit, whatever it holds)."""
        if not signals:
            return
        with self._transaction() as db:
            self._run_many(db, "INSERT INTO session_signals (session_id, body) VALUES (:session_id, :body)",
                           [{"session_id": session_id, "body": json.dumps(signal, ensure_ascii=False)}
                            for signal in signals])

    def _signals_of(self, session_ids: list[str]) -> dict[str, list[dict]]:
        """Each session's signals, in the order they came."""
        found: dict[str, list[dict]] = {sid: [] for sid in session_ids}
        if session_ids:
            names = {f"s{n}": sid for n, sid in enumerate(session_ids)}
            for sid, body in self._all(f"SELECT session_id, body FROM session_signals WHERE session_id IN"
                                       f" ({', '.join(':' + name for name in names)}) ORDER BY id", names):
                found[sid].append(json.loads(body))
        return found

    # ---- speakers ---------------------------------------------------------
    def set_speakers(self, session_id: str, segments: list[dict]) -> None:
        """A file's speakers after clustering: each utterance's label, and its turns where it has several."""
        by_utterance: dict[int, list[dict]] = {}
        for segment in segments:
            by_utterance.setdefault(segment["utterance"], []).append(segment)
        with self._transaction() as db:
            for utterance, parts in by_utterance.items():
                where = {"session_id": session_id, "idx": utterance}
                turns = None
                if len({p["speaker"] for p in parts}) > 1:
                    old = self._run(db, "SELECT turns FROM utterances WHERE session_id=:session_id AND idx=:idx",
                                    where).fetchone()
                    texts = [t["text"] for t in json.loads(old[0])] if old and old[0] else [""] * len(parts)
                    turns = json.dumps([{"speaker": p["speaker"], "start_ms": p["start_ms"], "end_ms": p["end_ms"],
                                         "text": text} for p, text in zip(parts, texts)], ensure_ascii=False)
                self._run(db, "UPDATE utterances SET speaker=:speaker, turns=:turns"
                              " WHERE session_id=:session_id AND idx=:idx",
                          {**where, "speaker": parts[0]["speaker"], "turns": turns})

    def rename_speakers(self, session_id: str, names: dict[str, str], tenant: str | None = ALL_TENANTS) -> bool:
        """names: label -> name (an empty name drops it); False: no such session for this tenant."""
        with self._transaction() as db:
            row = self._run(db, f"SELECT speaker_names FROM sessions s WHERE id=:id AND {_OWNED}",
                            {"id": session_id, "tenant": tenant}).fetchone()
            if row is None:
                return False
            merged = {**json.loads(row[0]), **names}
            merged = {label: name for label, name in merged.items() if name}
            self._run(db, "UPDATE sessions SET speaker_names=:names WHERE id=:id",
                      {"names": json.dumps(merged, ensure_ascii=False), "id": session_id})
            return True

    # ---- the webhook outbox ---------------------------------------------
    def _add_deliveries(self, db, deliveries) -> None:
        if not deliveries:
            return
        now = time.time()
        self._run_many(
            db, "INSERT INTO webhook_deliveries (delivery_id, session_id, url, secret, event, body, next_at,"
                " created_at) VALUES (:delivery_id, :session_id, :url, :secret, :event, :body, :now, :now)",
            [{**d, "now": now} for d in deliveries])

    def add_deliveries(self, deliveries: list[dict]) -> None:
        with self._transaction() as db:
            self._add_deliveries(db, deliveries)

    def transcript(self, session_id: str) -> list[dict]:
        """The session's finals so far, in order (a session_end webhook carries them)."""
        return [_row(("utterance", "start_ms", "end_ms", "text", "channel", "speaker"), r) for r in self._all(
            "SELECT idx, start_ms, end_ms, text, channel, speaker FROM utterances WHERE session_id=:id"
            " ORDER BY start_ms, idx", {"id": session_id})]

    def pending_heads(self, limit: int = 256) -> list[dict]:
        """Per URL, its oldest pending delivery (with when it is due): one URL's events go in order."""
        rows = self._all(
            f"SELECT {', '.join(DUE_COLUMNS)} FROM webhook_deliveries WHERE id IN"
            " (SELECT min(id) FROM webhook_deliveries WHERE status='pending' GROUP BY url)"
            " ORDER BY next_at LIMIT :limit", {"limit": limit})
        return [dict(zip(DUE_COLUMNS, r)) for r in rows]

    def delivery_attempted(self, row_id: int, status: str, attempts: int, next_at: float,
                           last_status: int | None, last_error: str | None) -> None:
        """A finished delivery (not pending) loses its signing secret in the same
        statement: the outbox holds a secret only while it may still sign. Only a
        pending one is updated, so a finished one never returns to the queue secretless."""
        self._run(self._db(),
                  "UPDATE webhook_deliveries SET status=:status, attempts=:attempts, next_at=:next_at,"
                  " last_status=:last_status, last_error=coalesce(:last_error, last_error),"   # the last failure's
                  " secret=CASE WHEN :status='pending' THEN secret ELSE '' END,"
                  " delivered_at=CASE WHEN :status='delivered' THEN :now ELSE delivered_at END"
                  " WHERE id=:id AND status='pending'",
                  {"status": status, "attempts": attempts, "next_at": next_at, "last_status": last_status,
                   "last_error": last_error, "now": time.time(), "id": row_id})

    def close_session(self, session_id: str, status: str, audio_ms: int = 0) -> None:
        """Record the end. A stream that ended without one utterance leaves
        nothing worth keeping (a file always stays: the user asked for it)."""
        db = self._db()
        self._run(db, "UPDATE sessions SET ended_at=:now, status=:status, audio_ms=:audio_ms WHERE id=:id",
                  {"now": time.time(), "status": status, "audio_ms": audio_ms, "id": session_id})
        self._run(db, "DELETE FROM sessions WHERE id=:id AND kind='stream'"
                      " AND NOT EXISTS (SELECT 1 FROM utterances WHERE session_id=:id)", {"id": session_id})

    def delete_session(self, session_id: str, tenant: str | None = ALL_TENANTS) -> bool:
        """The session, its utterances and its webhook deliveries (pending ones are not sent)."""
        with self._transaction() as db:
            if not self._run(db, f"DELETE FROM sessions AS s WHERE id=:id AND {_OWNED}",
                             {"id": session_id, "tenant": tenant}).rowcount:
                return False
            self._run(db, "DELETE FROM webhook_deliveries WHERE session_id=:id", {"id": session_id})
            return True

    # ---- reading (each scoped to a tenant) -------------------------------
    def list_sessions(self, limit: int = 50, offset: int = 0, tenant: str | None = ALL_TENANTS) -> list[dict]:
        cols = ", ".join(f"s.{c}" for c in SESSION_COLUMNS)
        rows = self._all(
            f"SELECT {cols}, (SELECT count(*) FROM utterances u WHERE u.session_id = s.id),"
            " (SELECT text FROM utterances u WHERE u.session_id = s.id ORDER BY idx LIMIT 1)"
            f" FROM sessions s WHERE {_OWNED} ORDER BY s.started_at DESC LIMIT :limit OFFSET :offset",
            {"tenant": tenant, "limit": limit, "offset": offset})
        sessions = [_row((*SESSION_COLUMNS, "utterances", "first_text"), r) for r in rows]
        signals = self._signals_of([s["id"] for s in sessions])
        for session in sessions:
            session["signals"] = signals[session["id"]]
        return sessions

    def count_sessions(self, tenant: str | None = ALL_TENANTS) -> int:
        return self._one(f"SELECT count(*) FROM sessions s WHERE {_OWNED}", {"tenant": tenant})[0]

    def get_session(self, session_id: str, tenant: str | None = ALL_TENANTS) -> dict | None:
        row = self._one(f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions s WHERE id=:id AND {_OWNED}",
                        {"id": session_id, "tenant": tenant})
        if row is None:
            return None
        session = _row(SESSION_COLUMNS, row)
        session["signals"] = self._signals_of([session_id])[session_id]
        session["utterances"] = [_row(UTTERANCE_COLUMNS, r) for r in self._all(
            f"SELECT {', '.join(UTTERANCE_COLUMNS)} FROM utterances WHERE session_id=:id ORDER BY start_ms, idx",
            {"id": session_id})]
        session["webhooks"] = [dict(zip(DELIVERY_COLUMNS, r)) for r in self._all(
            f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM webhook_deliveries WHERE session_id=:id ORDER BY id",
            {"id": session_id})]
        return session

    def search(self, query: str, limit: int = 50, offset: int = 0, tenant: str | None = ALL_TENANTS) -> list[dict]:
        """Utterances whose text (or raw text) contains `query`, newest first."""
        query = query.strip()
        if "\0" in query:   # SQLite ends strings at NUL (it would match everything); PostgreSQL refuses it
            raise ValueError("the search text must not contain NUL characters")
        if not query:
            return []
        cols = ", ".join(f"u.{c}" for c in UTTERANCE_COLUMNS)
        rows = self._all(
            f"SELECT u.session_id, s.started_at, s.kind, s.filename, {cols} FROM utterances u"
            f" JOIN sessions s ON s.id = u.session_id WHERE {self._contains(query)} AND {_OWNED}"
            " ORDER BY u.id DESC LIMIT :limit OFFSET :offset",
            {"tenant": tenant, "limit": limit, "offset": offset, "phrase": query, "pattern": like_pattern(query)})
        return [_row(("session_id", "session_started_at", "session_kind", "session_filename",
                      *UTTERANCE_COLUMNS), r) for r in rows]

    def _contains(self, query: str) -> str:
        """The condition on u (an utterance) for a search: :phrase as given, :pattern for LIKE."""
        raise NotImplementedError


def like_pattern(query: str) -> str:
    """query as a LIKE pattern that matches it anywhere, its wildcards escaped (ESCAPE '\\')."""
    return "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class HistoryStore(SqlHistory):
    """SQLite: one file, one server."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise HistoryError(f"cannot open the history database {self.path}: {reason} "
                               "(choose another --history-db, or 'off')") from None

    # ---- connections and schema ----------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # Takes effect only on a new, empty file (before WAL and the first
            # table); lets retention give space back.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we report the final to the client.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def _migrate(self) -> None:
        db = self._db()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise HistoryError(f"{self.path} has schema version {version}, newer than this Lingting "
                               f"knows ({len(MIGRATIONS)}): upgrade Lingting or use another --history-db")
        for number in range(version, len(MIGRATIONS)):
            # One transaction per migration, its version bump included.
            try:
                db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\nPRAGMA user_version={number + 1};\nCOMMIT;")
            except Exception:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self._db().execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextlib.contextmanager
    def _transaction(self):
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- the dialect's parts ----------------------------------------------
    def mark_interrupted(self) -> int:
        """Sessions left open by a server that died; their finals are kept."""
        return self._db().execute("UPDATE sessions SET status='interrupted' WHERE status='open'").rowcount

    def _contains(self, query: str) -> str:
        if len(query) >= MIN_FTS_QUERY:    # the trigram index; shorter queries scan
            return ("u.id IN (SELECT rowid FROM utterances_fts WHERE utterances_fts MATCH"
                    " '\"' || replace(:phrase, '\"', '\"\"') || '\"')")
        return "(u.text LIKE :pattern ESCAPE '\\' OR u.raw_text LIKE :pattern ESCAPE '\\')"

    # ---- retention ------------------------------------------------------
    def size_bytes(self) -> int:
        db = self._db()
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * db.execute("PRAGMA page_size").fetchone()[0]

    def enforce(self, retention: Retention, now: float | None = None) -> int:
        """Delete the oldest finished sessions past the age or size limit;
        returns how many went. Open sessions are never deleted."""
        db = self._db()
        deleted = 0
        if retention.max_age_days > 0:
            cutoff = (now or time.time()) - retention.max_age_days * 86400
            deleted += db.execute("DELETE FROM sessions WHERE status != 'open' AND started_at < ?",
                                  (cutoff,)).rowcount
            db.execute("DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < ?", (cutoff,))
        if retention.max_mb > 0:
            limit = retention.max_mb * 1024 * 1024
            while self.size_bytes() > limit:
                # A tenth of the oldest at a time: the full-text index gives
                # its space back only when merged, so measure after each merge.
                finished = db.execute("SELECT count(*) FROM sessions WHERE status != 'open'").fetchone()[0]
                if not finished:
                    break
                deleted += db.execute(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE status != 'open'"
                    " ORDER BY started_at LIMIT ?)", (max(1, finished // 10),)).rowcount
                db.execute("INSERT INTO utterances_fts(utterances_fts) VALUES ('optimize')")
        if deleted:
            db.execute("PRAGMA incremental_vacuum")
        return deleted


class AsyncHistory:
    """The store for asyncio code: writes in order on one thread, reads on another."""

    def __init__(self, store: HistoryStore, retention: Retention = Retention()):
        self.store = store
        self.retention = retention
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lingting-history-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="lingting-history-read")

    async def _write(self, call):
        return await asyncio.get_running_loop().run_in_executor(self._writer, call)

    async def _read(self, call):
        return await asyncio.get_running_loop().run_in_executor(self._reader, call)

    # writes, in the order they are asked for
    async def open_session(self, session_id: str, kind: str, **details) -> None:
        await self._write(lambda: self.store.open_session(session_id, kind, **details))

    async def add_utterance(self, session_id: str, final: dict, hotwords: list[str] = (),
                            deliveries: list[dict] = ()) -> None:
        await self._write(lambda: self.store.add_utterance(session_id, final, hotwords, deliveries))

    async def add_deliveries(self, deliveries: list[dict]) -> None:
        await self._write(lambda: self.store.add_deliveries(deliveries))

    async def add_session_end(self, session_id: str, make_deliveries) -> None:
        """make_deliveries(transcript) -> the session_end deliveries, built from what history holds."""
        await self._write(lambda: self.store.add_deliveries(make_deliveries(self.store.transcript(session_id))))

    # the webhook sender's, on the write thread (it changes what it reads)
    async def pending_heads(self) -> list[dict]:
        return await self._write(self.store.pending_heads)

    async def delivery_attempted(self, row_id: int, status: str, attempts: int, next_at: float,
                                 last_status: int | None, last_error: str | None) -> None:
        await self._write(lambda: self.store.delivery_attempted(row_id, status, attempts, next_at, last_status,
                                                                last_error))

    async def add_signals(self, session_id: str, signals: list[dict]) -> None:
        await self._write(lambda: self.store.add_signals(session_id, signals))

    async def close_session(self, session_id: str, status: str, audio_ms: int = 0) -> None:
        await self._write(lambda: self.store.close_session(session_id, status, audio_ms))

    async def set_speakers(self, session_id: str, segments: list[dict]) -> None:
        await self._write(lambda: self.store.set_speakers(session_id, segments))

    async def rename_speakers(self, session_id: str, names: dict[str, str], tenant: str | None) -> bool:
        return await self._write(lambda: self.store.rename_speakers(session_id, names, tenant))

    async def delete_session(self, session_id: str, tenant: str | None) -> bool:
        return await self._write(lambda: self.store.delete_session(session_id, tenant))

    async def enforce_retention(self) -> int:
        """The age and size limits; with several edges, also marks interrupted
        the open sessions of edges that died since."""
        def enforce():
            if self.store.edge is not None:
                self.store.mark_interrupted()
            return self.store.enforce(self.retention)
        return await self._write(enforce)

    # reads, each scoped to a tenant (None: all)
    async def list_sessions(self, limit: int, offset: int, tenant: str | None) -> tuple[list[dict], int]:
        return await self._read(lambda: (self.store.list_sessions(limit, offset, tenant),
                                         self.store.count_sessions(tenant)))

    async def search(self, query: str, limit: int, offset: int, tenant: str | None) -> list[dict]:
        return await self._read(lambda: self.store.search(query, limit, offset, tenant))

    async def get_session(self, session_id: str, tenant: str | None) -> dict | None:
        return await self._read(lambda: self.store.get_session(session_id, tenant))

    def close(self) -> None:
        for pool in (self._writer, self._reader):
            pool.submit(self.store.close)
            pool.shutdown(wait=True)
