"""Transcript history in PostgreSQL, for several edges sharing one history.

The same schema, queries and guarantees as SQLite (sql.py, outbox.py; a final
is committed before its client hears of it), plus what several edges need:
- substring search through pg_trgm indexes (Chinese and Japanese too);
- each edge holds an advisory lock while it lives, so a starting edge marks
  interrupted only the open sessions of edges that are gone;
- the webhook outbox is drained by one edge per URL at a time (a renewed
  claim), so each URL still gets its deliveries in order, once;
- a secret the edges share (viewer tokens minted on one edge open rooms on
  another).
Needs the `cluster` or `postgres` extra (psycopg 3)."""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from .outbox import DUE_COLUMNS
from .schema import MIGRATIONS
from .sql import HistoryError, Retention, SqlHistory

LOCKS = 0x4C54        # advisory lock namespace ("LT"): (LOCKS, 0) migrations, (LOCKS, n) edge n is alive
CLAIM_S = 90.0        # an edge's hold on a webhook URL; renewed at every outbox poll (at least every 30 s)

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@functools.lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """SQL with :named parameters as psycopg's %(named)s (the queries are few: translated once each)."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def is_postgres_url(location: str) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise HistoryError("a postgresql:// history needs psycopg: pip install 'lingting[postgres]'") from None
    return psycopg


class PostgresHistory(SqlHistory):
    def __init__(self, url: str):
        self.url = url
        self.path = without_password(url)
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        self.edge_number = 1 + secrets.randbelow(2**31 - 2)
        self.edge = str(self.edge_number)
        psycopg = _psycopg()
        try:
            # Held for this store's life: the other edges see that this one's sessions are live.
            self._presence = self._connect()
            self._presence.execute("SELECT pg_advisory_lock(%s, %s)", (LOCKS, self.edge_number))
            self._migrate()
        except psycopg.Error as exc:
            raise HistoryError(f"cannot open the history database {self.path}: {' '.join(str(exc).split())} "
                               "(check --history-db, or use a SQLite path, or 'off')") from None

    # ---- connections and schema ----------------------------------------
    def _connect(self):
        psycopg = _psycopg()
        # Client-side binding: a NULL parameter in ":tenant IS NULL" needs no type.
        db = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor, connect_timeout=10,
                             application_name="lingting")
        with self._lock:
            self._connections.append(db)
        return db

    def _db(self):
        db = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:     # a lost connection is replaced at the next call
            db = self._local.db = self._connect()
        return db

    def _run(self, db, sql: str, params=()):
        return db.execute(_pyformat(sql) if isinstance(params, dict) else sql, params)

    def _run_many(self, db, sql: str, rows: list) -> None:
        db.cursor().executemany(_pyformat(sql), rows)

    @contextlib.contextmanager
    def _transaction(self):
        db = self._db()
        with db.transaction():
            yield db

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCKS,))     # one edge migrates, the others wait
            db.execute("CREATE TABLE IF NOT EXISTS lingting_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM lingting_schema").fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise HistoryError(f"{self.path} has schema version {version}, newer than this Lingting "
                                   f"knows ({len(MIGRATIONS)}): upgrade Lingting or use another --history-db")
            for number in range(version, len(MIGRATIONS)):
                db.execute(MIGRATIONS[number].postgres)
            if row is None:
                db.execute("INSERT INTO lingting_schema (version) VALUES (%s)", (len(MIGRATIONS),))
            else:
                db.execute("UPDATE lingting_schema SET version = %s", (len(MIGRATIONS),))

    @property
    def schema_version(self) -> int:
        return self._one("SELECT version FROM lingting_schema")[0]

    def close(self) -> None:
        """Every connection of this store (its edge's lock and webhook claims go with them)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            if not db.closed:
                with contextlib.suppress(Exception):
                    if db is self._presence:
                        db.execute("DELETE FROM webhook_claims WHERE edge = %s", (self.edge,))
                db.close()
        self._local = threading.local()

    def shared_secret(self, name: str) -> bytes:
        """A random secret every edge of this database shares (made by the first that asks)."""
        self._run(self._db(), "INSERT INTO lingting_secrets (name, value) VALUES (:name, :value)"
                              " ON CONFLICT (name) DO NOTHING", {"name": name, "value": secrets.token_bytes(32)})
        return bytes(self._one("SELECT value FROM lingting_secrets WHERE name = :name", {"name": name})[0])

    # ---- the dialect's parts ----------------------------------------------
    def mark_interrupted(self) -> int:
        """Open sessions of edges that are gone (no edge holds their lock); their finals are kept."""
        return self._run(self._db(),
                         "UPDATE sessions SET status = 'interrupted' WHERE status = 'open' AND (edge IS NULL OR"
                         " edge NOT IN (SELECT objid::text FROM pg_locks WHERE locktype = 'advisory'"
                         " AND classid = :locks AND objsubid = 2 AND granted))", {"locks": LOCKS}).rowcount

    def _contains(self, query: str) -> str:
        return "(u.text ILIKE :pattern ESCAPE '\\' OR u.raw_text ILIKE :pattern ESCAPE '\\')"

    def pending_heads(self, limit: int = 256) -> list[dict]:
        """Per URL, its oldest pending delivery, for the URLs this edge drains: the
        ones it claimed before, or nobody holds (the claim of an edge that died
        runs out after CLAIM_S)."""
        cols = ", ".join(DUE_COLUMNS)
        now = time.time()
        rows = self._all(
            f"WITH heads AS (SELECT DISTINCT ON (url) {cols} FROM webhook_deliveries WHERE status = 'pending'"
            " ORDER BY url, id),"
            " claimed AS (INSERT INTO webhook_claims (url, edge, until) SELECT url, :edge, :until FROM heads"
            " ON CONFLICT (url) DO UPDATE SET edge = excluded.edge, until = excluded.until"
            " WHERE webhook_claims.edge = excluded.edge OR webhook_claims.until < :now RETURNING url)"
            f" SELECT {cols} FROM heads WHERE url IN (SELECT url FROM claimed) ORDER BY next_at LIMIT :limit",
            {"edge": self.edge, "until": now + CLAIM_S, "now": now, "limit": limit})
        return [dict(zip(DUE_COLUMNS, r)) for r in rows]

    # ---- retention ------------------------------------------------------
    def size_bytes(self) -> int:
        """The live rows' size (what retention can give back; PostgreSQL reuses
        the space of deleted rows after autovacuum, without shrinking files)."""
        return int(self._one(
            "SELECT (SELECT coalesce(sum(pg_column_size(s.*)), 0) FROM sessions s)"
            " + (SELECT coalesce(sum(pg_column_size(u.*)), 0) FROM utterances u)"
            " + (SELECT coalesce(sum(pg_column_size(g.*)), 0) FROM session_signals g)"
            " + (SELECT coalesce(sum(pg_column_size(w.*)), 0) FROM webhook_deliveries w)")[0])

    def enforce(self, retention: Retention, now: float | None = None) -> int:
        """As SQLite's."""
        db = self._db()
        deleted = 0
        if retention.max_age_days > 0:
            cutoff = (now or time.time()) - retention.max_age_days * 86400
            deleted += self._run(db, "DELETE FROM sessions WHERE status != 'open' AND started_at < :cutoff",
                                 {"cutoff": cutoff}).rowcount
            self._run(db, "DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < :cutoff",
                      {"cutoff": cutoff})
        if retention.max_mb > 0:
            limit = retention.max_mb * 1024 * 1024
            while self.size_bytes() > limit:
                finished = self._one("SELECT count(*) FROM sessions WHERE status != 'open'")[0]
                if not finished:
                    break
                deleted += self._run(
                    db, "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE status != 'open'"
                        " ORDER BY started_at LIMIT :n)", {"n": max(1, finished // 10)}).rowcount
        return deleted
