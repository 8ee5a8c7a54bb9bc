"""Transcript history: one migration list and one query set (schema.py, sql.py) for
two databases, SQLite (store.py, with the async wrapper the edge uses) and
PostgreSQL (postgres.py)."""
