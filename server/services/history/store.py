"""Transcript history: the SQLite store (one file, one server), `open_store`
for a path or a postgresql:// URL, and `AsyncHistory`, through which the
server calls either. The schema is in schema.py, the shared queries in sql.py and outbox.py,
PostgreSQL's parts in postgres.py.

Plain synchronous code on one connection per thread; `AsyncHistory` keeps
writes on one thread (in order) and reads on another, so a long search never
holds up a final being stored."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .postgres import PostgresHistory, is_postgres_url
from .schema import MIGRATIONS
from .sql import ALL_TENANTS, HistoryError, Retention, SqlHistory

__all__ = ["ALL_TENANTS", "MIGRATIONS", "AsyncHistory", "HistoryError", "HistoryStore", "Retention", "SqlHistory",
           "default_path", "open_store"]

MIN_FTS_QUERY = 3   # the trigram index needs three characters; shorter queries scan


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lingting" / "history.sqlite3"


def open_store(location: str | Path) -> SqlHistory:
    """A SQLite file's path, or a postgresql:// URL (several edges share it)."""
    return PostgresHistory(str(location)) if is_postgres_url(str(location)) else HistoryStore(location)


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
                db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[number].sqlite}\n"
                                 f"PRAGMA user_version={number + 1};\nCOMMIT;")
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
    """The store for asyncio code: `await history.<store method>(...)` runs that
    method of the store on a thread. Writes (and the webhook sender's reads,
    which race its writes) go in the order asked on one thread: a final is
    stored before the client is sent it. READS go on another thread, so a long
    search never holds up a final being stored."""

    READS = frozenset({"list_sessions", "count_sessions", "get_session", "search"})

    def __init__(self, store: SqlHistory, retention: Retention = Retention()):
        self.store = store
        self.retention = retention
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lingting-history-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="lingting-history-read")

    def __getattr__(self, name: str):
        store = self.__dict__.get("store")
        # Looked up on the class: a property (schema_version) is no method, and is not run here.
        if name.startswith("_") or not callable(getattr(type(store), name, None)):
            raise AttributeError(f"{type(self).__name__!r} has no store method {name!r}")
        return functools.partial(self._on, self._reader if name in self.READS else self._writer, getattr(store, name))

    @staticmethod
    async def _on(pool: ThreadPoolExecutor, method, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(method, *args, **kwargs))

    async def list_sessions(self, limit: int, offset: int, tenant: str | None) -> tuple[list[dict], int]:
        """A page of sessions and how many there are, in one read."""
        return await self._on(self._reader, lambda: (self.store.list_sessions(limit, offset, tenant),
                                                     self.store.count_sessions(tenant)))

    async def enforce_retention(self) -> int:
        return await self._on(self._writer, self.store.enforce_retention, self.retention)

    def close(self) -> None:
        for pool in (self._writer, self._reader):
            pool.submit(self.store.close)
            pool.shutdown(wait=True)
