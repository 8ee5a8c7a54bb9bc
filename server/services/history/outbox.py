"""The webhook outbox's queries, which SQLite and PostgreSQL both run: the
deliveries a final or a session's end queues (in the same transaction as
what they carry), the heads the sender polls, and each attempt's outcome.
PostgreSQL overrides `pending_heads` to claim URLs across edges (postgres.py).

`SqlHistory` (sql.py) inherits this; the outbox does not import it back."""

from __future__ import annotations

import time

# A delivery as a session's page shows it (sql.py: get_session), and as the sender takes it.
DELIVERY_COLUMNS = ("delivery_id", "url", "event", "status", "attempts", "last_status", "last_error", "created_at",
                    "delivered_at")
DUE_COLUMNS = ("id", "delivery_id", "session_id", "url", "secret", "event", "body", "attempts", "created_at",
               "next_at")
_TRANSCRIPT_COLUMNS = ("utterance", "start_ms", "end_ms", "text", "channel", "speaker")


class WebhookOutbox:
    """A mixin of `SqlHistory`: it runs on that class's connection methods
    (`_db`, `_transaction`, `_run`, `_run_many`, `_all`)."""

    def _add_deliveries(self, db, deliveries) -> None:
        """Inside the caller's transaction, so a delivery is stored with what it carries."""
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

    def add_session_end(self, session_id: str, make_deliveries) -> None:
        """make_deliveries(transcript) -> the session_end deliveries, built from what history holds."""
        self.add_deliveries(make_deliveries(self.transcript(session_id)))

    def transcript(self, session_id: str) -> list[dict]:
        """The session's finals so far, in order (a session_end webhook carries them)."""
        rows = self._all("SELECT idx, start_ms, end_ms, text, channel, speaker FROM utterances WHERE session_id=:id"
                         " ORDER BY start_ms, idx", {"id": session_id})
        return [dict(zip(_TRANSCRIPT_COLUMNS, r)) for r in rows]

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
