"""What both history databases share: every query that SQLite and PostgreSQL
both run (`SqlHistory`; the webhook outbox's in outbox.py), the rows' shapes,
tenancy and retention limits. The schema is schema.py.

The dialects (store.py: SQLite; postgres.py: PostgreSQL) import this
module, never the reverse."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .outbox import DELIVERY_COLUMNS, WebhookOutbox

SESSION_COLUMNS = ("id", "kind", "started_at", "ended_at", "status", "model", "language", "filename",
                   "audio_ms", "client", "settings", "owner", "speaker_names")
UTTERANCE_COLUMNS = ("idx", "start_ms", "end_ms", "text", "raw_text", "language", "words", "hotwords", "channel",
                     "speaker", "created_at", "turns")
_JSON_COLUMNS = {"client", "settings", "words", "hotwords", "turns", "speaker_names"}


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


def _row(columns, values) -> dict:
    row = dict(zip(columns, values))
    for key in _JSON_COLUMNS & row.keys():
        if row[key] is not None:
            row[key] = json.loads(row[key])
    return row


class SqlHistory(WebhookOutbox):
    """What both backends share: every query here (and the webhook outbox's,
    outbox.py) is plain SQL that SQLite and PostgreSQL both run, with :named
    parameters. A subclass gives the connection (one per thread), transactions,
    the schema and the few dialect-specific parts (search, retention, claiming
    the outbox's URLs)."""

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

    # ---- retention --------------------------------------------------------
    def mark_interrupted(self) -> int: raise NotImplementedError

    def enforce(self, retention: Retention, now: float | None = None) -> int: raise NotImplementedError

    def enforce_retention(self, retention: Retention) -> int:
        """The age and size limits; with several edges, also marks interrupted
        the open sessions of edges that died since."""
        if self.edge is not None:
            self.mark_interrupted()
        return self.enforce(retention)


def like_pattern(query: str) -> str:
    """query as a LIKE pattern that matches it anywhere, its wildcards escaped (ESCAPE '\\')."""
    return "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
