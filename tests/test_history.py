"""The history store and its exports: one suite, run on both backends (real
SQLite files, and a real PostgreSQL server in a temporary directory)."""

import asyncio
import contextlib
import json
import sqlite3
import threading
import time

import pytest
import srt
import webvtt

from lingting_server.text.export import render
from lingting_server.services.history.store import MIGRATIONS, AsyncHistory, HistoryError, HistoryStore, Retention, open_store
from lingting_server.protocols.messages import parse_message


def final(idx, text, start, end, raw=None):
    return {"utterance": idx, "start_ms": start, "end_ms": end, "text": text, "raw_text": raw or text,
            "language": "en", "words": [{"word": (text.split() or [""])[0], "start_ms": start, "end_ms": end,
                                         "probability": 0.9}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """Where a history lives: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "h" / "history.sqlite3"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def store(location):
    s = open_store(location)
    yield s
    s.close()


def test_schema_is_versioned_and_in_wal_mode(tmp_path):
    store = HistoryStore(tmp_path / "h" / "history.sqlite3")
    assert store.schema_version == len(MIGRATIONS)
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2     # incremental
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    store.close()
    with pytest.raises(HistoryError, match="newer than this Lingting knows"):
        HistoryStore(store.path)


def test_postgres_schema_is_versioned_and_shared_by_edges(postgres):
    import psycopg
    url = postgres.new_database()
    edges = [open_store(url) for _ in range(2)]             # the second finds the schema made
    assert all(e.schema_version == len(MIGRATIONS) for e in edges)
    assert edges[0].shared_secret("rooms") == edges[1].shared_secret("rooms") != edges[0].shared_secret("other")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE lingting_schema SET version = version + 1")
    for e in edges:
        e.close()
    with pytest.raises(HistoryError, match="newer than this Lingting knows"):
        open_store(url)
    with pytest.raises(HistoryError, match=r"postgresql://lingting:\*\*\*@127.0.0.1:1/x.*--history-db"):
        open_store("postgresql://lingting:hunter2@127.0.0.1:1/x")     # the password is not shown


def test_sessions_utterances_and_search(store):
    store.open_session("a", "stream", model="m", language="en", client={"address": "1.2.3.4"},
                       settings={"itn": True})
    store.add_utterance("a", final(0, "ask not what your country can do for you", 0, 3000), ["country"])
    store.add_utterance("a", final(1, "It costs $25.", 3500, 5000, raw="it costs twenty five dollars"))
    store.add_utterance("a", final(1, "a duplicate of utterance 1 is ignored", 3500, 5000))
    store.open_session("b", "file", filename="会议.wav", language="zh")
    store.add_utterance("b", final(0, "阿里巴巴达摩院发布了新模型", 0, 2000))
    store.close_session("a", "stopped", 5000)
    store.open_session("silent-stream", "stream")
    store.close_session("silent-stream", "disconnected")
    store.open_session("silent-file", "file")
    store.close_session("silent-file", "stopped")
    assert store.get_session("silent-stream") is None        # nothing said: not kept
    assert store.get_session("silent-file")["utterances"] == []
    store.delete_session("silent-file")

    session = store.get_session("a")
    assert session["status"] == "stopped" and session["audio_ms"] == 5000 and session["ended_at"]
    assert session["client"] == {"address": "1.2.3.4"} and session["settings"] == {"itn": True}
    assert [u["text"] for u in session["utterances"]] == ["ask not what your country can do for you", "It costs $25."]
    assert session["utterances"][0]["hotwords"] == ["country"]
    assert session["utterances"][0]["words"][0]["word"] == "ask"

    listed = store.list_sessions()
    assert [s["id"] for s in listed] == ["b", "a"] and listed[1]["utterances"] == 2
    assert listed[1]["first_text"].startswith("ask not")

    assert [r["idx"] for r in store.search("WHAT YOUR COUNTRY")] == [0]     # case-insensitive phrase
    assert store.search("twenty five")[0]["text"] == "It costs $25."        # raw text is searched too
    assert store.search("达摩院")[0]["session_id"] == "b"                    # no spaces needed
    assert store.search("模型")[0]["session_id"] == "b"                      # under 3 characters: a scan
    assert store.search('"; DROP TABLE sessions; --') == []
    assert store.search("%") == [] and store.search("   ") == []

    assert store.delete_session("a") and not store.delete_session("a")
    assert store.search("country") == [] and store.get_session("a") is None


def test_interrupted_sessions_and_retention(store, location):
    now = time.time()
    store.open_session("old", "stream", started_at=now - 40 * 86400)
    store.add_utterance("old", final(0, "old words", 0, 1))
    store.close_session("old", "stopped")
    gone = open_store(location)                        # an edge (or the last run) that dies with a session open
    gone.open_session("open-old", "stream", started_at=now - 40 * 86400)   # still open: kept
    gone.close()
    several_edges = not isinstance(store, HistoryStore)     # SQLite: one server, which marks at its start
    if several_edges:
        store.open_session("live", "stream")           # a live edge's open session is not interrupted
    store.open_session("new", "stream")
    store.add_utterance("new", final(0, "new words", 0, 1))
    store.close_session("new", "stopped")
    assert store.enforce(Retention(max_age_days=30)) == 1
    assert store.get_session("old") is None and store.get_session("open-old")
    assert store.mark_interrupted() == 1 and store.get_session("open-old")["status"] == "interrupted"
    if several_edges:
        assert store.get_session("live")["status"] == "open"
        store.close_session("live", "stopped")

    for n in range(60):
        store.open_session(f"s{n}", "stream", started_at=now + n)
        for i in range(20):
            store.add_utterance(f"s{n}", final(i, f"utterance {i} of session {n} " + "words " * 40, i, i + 1))
        store.close_session(f"s{n}", "stopped")
    before = store.size_bytes()
    assert before > 1 << 19
    limit_mb = before / 2 / (1 << 20)
    deleted = store.enforce(Retention(max_mb=limit_mb))
    assert 0 < deleted < 61 and store.size_bytes() <= limit_mb * (1 << 20)
    assert store.get_session("s59") is not None          # the newest stay


def test_exports_parse_as_subtitles(store):
    store.open_session("a", "stream")
    store.add_utterance("a", final(0, "First line.", 1200, 3450))
    store.add_utterance("a", final(1, "", 4000, 4100))          # an empty final makes no cue
    store.add_utterance("a", final(2, "第二句。", 3_723_004, 3_725_000))
    session = store.get_session("a")
    cues = list(srt.parse(render(session, "srt")))
    assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
        (1.2, 3.45, "First line."), (3723.004, 3725.0, "第二句。")]
    vtt = webvtt.from_string(render(session, "vtt"))
    assert [(c.start, c.end, c.text) for c in vtt] == [
        ("00:00:01.200", "00:00:03.450", "First line."), ("01:02:03.004", "01:02:05.000", "第二句。")]
    assert render(session, "txt") == "First line.\n第二句。\n"
    assert '"First line."' in render(session, "json")
    with pytest.raises(ValueError):
        render(session, "docx")


def test_reads_are_scoped_to_the_tenant(store):
    store.open_session("mine", "stream", owner="agents")
    store.open_session("theirs", "stream", owner="others")
    store.open_session("local", "stream")                      # a keyless server's: no owner
    for sid, text in (("mine", "quarterly report for acme"), ("theirs", "quarterly numbers for globex"),
                      ("local", "quarterly plans")):
        store.add_utterance(sid, final(0, text, 0, 900))
    assert [s["id"] for s in store.list_sessions(tenant="agents")] == ["mine"]
    assert store.count_sessions(tenant="agents") == 1 and store.count_sessions() == 3
    assert {s["id"] for s in store.list_sessions()} == {"mine", "theirs", "local"}   # admin / local mode
    assert store.get_session("theirs", tenant="agents") is None
    assert store.get_session("mine", tenant="agents")["owner"] == "agents"
    for query in ("quarterly", "qu"):                           # the FTS and the short LIKE path
        assert {r["session_id"] for r in store.search(query, tenant="agents")} == {"mine"}
        assert {r["session_id"] for r in store.search(query)} == {"mine", "theirs", "local"}
    assert not store.delete_session("theirs", tenant="agents")
    assert store.get_session("theirs") is not None
    assert store.delete_session("mine", tenant="agents")
    with pytest.raises(ValueError, match="NUL"):
        store.search("\0")


def test_sessions_from_before_tenancy_belong_to_no_key(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MIGRATIONS[0].sqlite + "\nPRAGMA user_version=1;")
    db.execute("INSERT INTO sessions (id, kind, started_at, status) VALUES ('old', 'stream', 1, 'stopped')")
    db.close()
    store = HistoryStore(path)
    assert store.schema_version == len(MIGRATIONS)
    assert store.get_session("old")["owner"] is None
    assert store.get_session("old", tenant="agents") is None and store.list_sessions(tenant="agents") == []
    store.close()


def test_a_history_that_cannot_be_opened_names_its_path(tmp_path):
    (tmp_path / "taken").mkdir()                               # a directory where the file should be
    with pytest.raises(HistoryError, match=f"{tmp_path / 'taken'}.*--history-db"):
        HistoryStore(tmp_path / "taken")
    (tmp_path / "file").write_text("")
    with pytest.raises(HistoryError, match=f"{tmp_path / 'file' / 'h.sqlite3'}"):
        HistoryStore(tmp_path / "file" / "h.sqlite3")


def test_the_webhook_outbox_keeps_each_url_in_order(store):
    store.open_session("a", "stream")
    rows = [{"delivery_id": f"d{n}", "session_id": "a", "url": url, "secret": "s" * 16, "event": "final",
             "body": "{}"} for n, url in enumerate(["https://a.example/h", "https://b.example/h",
                                                    "https://a.example/h"])]
    store.add_utterance("a", final(0, "hello", 0, 900), deliveries=rows[:2])
    store.add_deliveries(rows[2:])
    heads = store.pending_heads()
    assert sorted(h["delivery_id"] for h in heads) == ["d0", "d1"]         # one per URL, the oldest
    first = next(h for h in heads if h["delivery_id"] == "d0")
    store.delivery_attempted(first["id"], "pending", 1, time.time() + 60, 503, "HTTP 503")
    assert {h["delivery_id"] for h in store.pending_heads()} == {"d0", "d1"}   # a retry holds its URL back
    store.delivery_attempted(first["id"], "delivered", 2, 0, 200, None)
    assert {h["delivery_id"] for h in store.pending_heads()} == {"d1", "d2"}
    webhooks = store.get_session("a")["webhooks"]
    assert [(w["delivery_id"], w["status"], w["attempts"], w["last_error"]) for w in webhooks][0] == \
        ("d0", "delivered", 2, "HTTP 503")                                  # the last failure is kept


def outbox_secrets(store) -> dict[str, str]:
    return dict(store._all("SELECT delivery_id, secret FROM webhook_deliveries"))


def test_a_delivery_forgets_its_secret_once_it_leaves_pending(store):
    """A signing secret stays in the outbox only while a delivery still needs it (issue 34.8):
    delivered, failed or refused, the same statement blanks it, and it never comes back to pending."""
    store.open_session("a", "stream")
    store.add_deliveries([{"delivery_id": f"d{n}", "session_id": "a", "url": f"https://r{n}.example/h",
                           "secret": f"secret-{n}-" + "s" * 16, "event": "final", "body": "{}"} for n in range(4)])
    ids = {h["delivery_id"]: h["id"] for h in store.pending_heads()}
    store.delivery_attempted(ids["d0"], "pending", 1, time.time() + 60, 503, "HTTP 503")   # a retry needs it
    store.delivery_attempted(ids["d1"], "delivered", 1, 0, 200, None)
    store.delivery_attempted(ids["d2"], "failed", 1, 0, 400, "the receiver refused it: HTTP 400")
    store.delivery_attempted(ids["d3"], "refused", 1, 0, None, "a private address")
    assert outbox_secrets(store) == {"d0": "secret-0-" + "s" * 16, "d1": "", "d2": "", "d3": ""}
    # A late attempt (another edge's, after a lost claim) does not put a finished one back in the queue.
    store.delivery_attempted(ids["d1"], "pending", 2, 0, 503, "HTTP 503")
    assert {h["delivery_id"] for h in store.pending_heads()} == {"d0"}
    assert [w["status"] for w in store.get_session("a")["webhooks"]] == ["pending", "delivered", "failed", "refused"]
    assert all("secret" not in w for w in store.get_session("a")["webhooks"])


# ---- databases of before: made at an older schema version, opened by this code -----
@contextlib.contextmanager
def created_at(location, version: int):
    """A history as an older Lingting left it: the first `version` migrations, run as that
    Lingting ran them; yields execute(sql, params) with ? parameters, to seed rows."""
    if isinstance(location, str):
        import psycopg
        with psycopg.connect(location, autocommit=True) as db:
            db.execute("CREATE TABLE lingting_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO lingting_schema (version) VALUES (%s)", (version,))
            for migration in MIGRATIONS[:version]:
                db.execute(migration.postgres)
            yield lambda sql, params=(): db.execute(sql.replace("?", "%s"), params)
    else:
        location.parent.mkdir(parents=True)
        db = sqlite3.connect(location, isolation_level=None)
        for migration in MIGRATIONS[:version]:
            db.executescript(migration.sqlite)
        db.execute(f"PRAGMA user_version={version}")
        yield db.execute
        db.close()


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_a_history_of_any_version_migrates_to_this_one(location, version):
    with created_at(location, version):
        pass
    store = open_store(location)
    try:
        assert store.schema_version == len(MIGRATIONS)
    finally:
        store.close()


def test_both_databases_have_the_same_tables_and_columns(tmp_path, postgres):
    """One migration list, two dialects: what the queries use is the same on both."""
    sqlite, pg = open_store(tmp_path / "h.sqlite3"), open_store(postgres.new_database())
    try:
        tables = {r[0] for r in sqlite._all("SELECT name FROM sqlite_master WHERE type = 'table'"
                                            " AND name NOT LIKE 'utterances_fts%'")}   # SQLite's search index
        pg_tables = {r[0] for r in pg._all("SELECT table_name FROM information_schema.tables"
                                           " WHERE table_schema = 'public'")}
        # PostgreSQL's own: its version, and what several edges share
        assert pg_tables - tables == {"lingting_schema", "webhook_claims", "lingting_secrets"}
        assert tables <= pg_tables
        for table in tables:
            assert store_columns(sqlite, table) == store_columns(pg, table), table
    finally:
        sqlite.close()
        pg.close()


SECRETS_KEPT = 7        # the schema version whose finished deliveries kept their secrets


def test_finished_deliveries_of_before_lose_their_secrets(location):
    """A database from before blanks the secrets its finished deliveries still hold, on both backends."""
    seed = ("INSERT INTO webhook_deliveries (delivery_id, session_id, url, secret, event, body, status, next_at,"
            " created_at) VALUES (?, 's', ?, 'secret-of-before', 'final', '{}', ?, 0, 1)")
    rows = [("p", "https://p.example/h", "pending"), ("d", "https://d.example/h", "delivered"),
            ("f", "https://f.example/h", "failed"), ("r", "https://r.example/h", "refused")]
    with created_at(location, SECRETS_KEPT) as execute:
        for row in rows:
            execute(seed, row)
    store = open_store(location)
    try:
        assert outbox_secrets(store) == {"p": "secret-of-before", "d": "", "f": "", "r": ""}
    finally:
        store.close()


def test_telephony_signals_and_speaker_names(store):
    store.open_session("call", "stream", owner="agents")
    store.add_utterance("call", final(0, "hello", 0, 900))
    store.add_signals("call", [{"type": "dtmf", "digit": "5"}])
    store.add_signals("call", [{"type": "mark", "name": "ivr"}, {"type": "dtmf", "digit": "#"}])
    store.add_signals("call", [])
    store.set_speakers("call", [{"utterance": 0, "speaker": "S1", "start_ms": 0, "end_ms": 400},
                                {"utterance": 0, "speaker": "S2", "start_ms": 400, "end_ms": 900}])
    assert not store.rename_speakers("call", {"S1": "Ann"}, tenant="others")
    assert store.rename_speakers("call", {"S1": "Ann", "S2": "Bo"}, tenant="agents")
    assert store.rename_speakers("call", {"S2": ""})                       # an empty name drops it
    session = store.get_session("call")
    signals = [{"type": "dtmf", "digit": "5"}, {"type": "mark", "name": "ivr"}, {"type": "dtmf", "digit": "#"}]
    assert session["signals"] == signals
    assert [s["signals"] for s in store.list_sessions()] == [signals]
    assert session["speaker_names"] == {"S1": "Ann"}
    assert [t["speaker"] for t in session["utterances"][0]["turns"]] == ["S1", "S2"]


def test_edges_on_one_postgres_drain_each_url_once(postgres):
    url = postgres.new_database()
    a, b = open_store(url), open_store(url)
    a.open_session("s", "stream")
    a.add_deliveries([{"delivery_id": f"d{n}", "session_id": "s", "url": f"https://r{n % 2}.example/h",
                       "secret": "s" * 16, "event": "final", "body": "{}"} for n in range(4)])
    taken_a = {h["url"] for h in a.pending_heads()}
    assert taken_a == {"https://r0.example/h", "https://r1.example/h"}
    assert b.pending_heads() == []                       # a drains both URLs: b waits
    a.close()                                            # a stops: its claims go with it
    assert {h["delivery_id"] for h in b.pending_heads()} == {"d0", "d1"}
    b.close()


# ---- telephony signals as rows (issue 34.6) ----------------------------------------
def test_signals_are_rows_of_their_own_and_go_with_their_session(store):
    """A signal is one row: storing one never rewrites what the session holds (a JSON column rewritten
    per mark made each write cost the size of all before it). Shapes are as before."""
    store.open_session("call", "stream", owner="agents")
    store.open_session("other", "stream", owner="agents")
    for n in range(3):
        store.add_utterance(("call", "other")[n % 2], final(n, "hello", n * 1000, n * 1000 + 900))
    store.add_signals("call", [{"type": "mark", "name": f"m{n}", "audio_ms": n} for n in range(500)])
    store.add_signals("other", [{"type": "dtmf", "digit": "1", "audio_ms": 5}])
    assert [s["name"] for s in store.get_session("call")["signals"]] == [f"m{n}" for n in range(500)]
    by_id = {s["id"]: s["signals"] for s in store.list_sessions()}
    assert len(by_id["call"]) == 500 and by_id["other"] == [{"type": "dtmf", "digit": "1", "audio_ms": 5}]
    assert "signals" not in {c.lower() for c in store_columns(store, "sessions")}
    assert store.delete_session("call")
    assert count_rows(store, "session_signals") == 1             # the deleted session's went with it
    store.open_session("quiet", "stream")
    store.add_signals("quiet", [{"type": "dtmf", "digit": "9"}])
    store.close_session("quiet", "stopped")                      # a stream without a final is not kept...
    assert store.get_session("quiet") is None and count_rows(store, "session_signals") == 1   # ...nor its signals


def store_columns(store, table: str) -> list[str]:
    if isinstance(store, HistoryStore):
        return [r[1] for r in store._all(f"PRAGMA table_info({table})")]
    return [r[0] for r in store._all("SELECT column_name FROM information_schema.columns WHERE table_name = :t"
                                     " ORDER BY ordinal_position", {"t": table})]


def count_rows(store, table: str) -> int:
    return store._one(f"SELECT count(*) FROM {table}")[0]


SIGNALS_AS_JSON = 6     # the schema version whose sessions held signals as one JSON column


def test_signals_stored_as_json_move_to_rows(location):
    """A database from before keeps its sessions' signals, in order, on both backends."""
    old = [{"type": "dtmf", "digit": "7", "audio_ms": 2000, "channel": 0, "speaker": "inbound", "redacted": False},
           {"type": "mark", "name": "greeting \u64ad\u653e", "audio_ms": 2010}]
    with created_at(location, SIGNALS_AS_JSON) as execute:
        seed_signals(execute, old)
    store = open_store(location)
    try:
        assert store.schema_version == len(MIGRATIONS) > SIGNALS_AS_JSON
        assert store.get_session("call")["signals"] == old and store.get_session("none")["signals"] == []
        store.add_signals("call", [{"type": "dtmf", "digit": "#"}])
        assert store.get_session("call")["signals"][-1] == {"type": "dtmf", "digit": "#"}
    finally:
        store.close()


def seed_signals(execute, signals: list[dict]) -> None:
    for sid, held in (("call", signals), ("none", [])):
        execute("INSERT INTO sessions (id, kind, started_at, status, signals) VALUES (?, 'stream', 1, 'stopped', ?)",
                (sid, json.dumps(held)))


async def test_a_sessions_signals_are_stored_in_batches(tmp_path):
    """One call flooding marks costs the shared history writer about one write a second, not one a mark
    (issue 34.6): the first is stored at once, the rest in a batch before the next final or at the end."""
    from lingting_server.edge.observers import HistoryRecorder
    from lingting_server.edge.sinks import StreamInfo
    from lingting_server.services.history.store import AsyncHistory
    from lingting_server.wire import events
    from lingting_server.streaming.session import Session

    store = HistoryStore(tmp_path / "history.sqlite3")
    batches = []
    add_signals = store.add_signals
    store.add_signals = lambda sid, signals: (batches.append(len(signals)), add_signals(sid, signals))
    history = AsyncHistory(store)
    session = Session("call", "m")
    (ready,) = session.receive(parse_message({"type": "start"})).events
    recorder = HistoryRecorder(history, StreamInfo(session, {}, "agents"))
    try:
        await recorder.observe(ready)
        for n in range(300):
            await recorder.observe(events.Mark(f"m{n}", n))
        await recorder.observe(events.Final(0, 0, 900, "silence", "hello", "hello", "en"))
        await recorder.observe(events.Dtmf("5", 950))
        session.outcome = "stopped"
        await recorder.observe(events.Stopped(1, 1000))
        stored = store.get_session("call")["signals"]
        assert [s.get("name", s.get("digit")) for s in stored] == [f"m{n}" for n in range(300)] + ["5"]
        assert batches == [1, 299, 1]
    finally:
        history.close()


async def test_async_history_runs_store_methods_writes_in_order_reads_beside(store):
    """Any store method, awaited: writes in the order asked on the one writer thread (a final is
    stored before it is sent), reads on another thread."""
    threads: dict[str, set[str]] = {}

    def watch(name):
        method = getattr(store, name)

        def on_its_thread(*args, **kwargs):
            threads.setdefault(name, set()).add(threading.current_thread().name)
            return method(*args, **kwargs)
        setattr(store, name, on_its_thread)

    watch("add_utterance")
    watch("search")
    history = AsyncHistory(store, Retention(max_age_days=30))
    try:
        await history.open_session("a", "stream", owner="agents", started_at=time.time() - 40 * 86400)
        await asyncio.gather(*(history.add_utterance("a", final(n, f"words number {n}", n, n + 1))
                               for n in range(20)))
        await history.close_session("a", "stopped", 20_000)
        # stored in the order asked: the search gives the newest first
        assert [r["idx"] for r in await history.search("number", 50, 0, None)] == list(range(19, -1, -1))
        sessions, total = await history.list_sessions(10, 0, "agents")
        assert total == 1 and sessions[0]["utterances"] == 20
        assert await history.get_session("a", "others") is None
        (writer,), (reader,) = threads["add_utterance"], threads["search"]
        assert writer.startswith("lingting-history-write") and reader.startswith("lingting-history-read")
        assert await history.enforce_retention() == 1
        with pytest.raises(AttributeError):
            history.schema_version          # a property, not a method: not run on the event loop
    finally:
        history.close()
