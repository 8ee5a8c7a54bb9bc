"""Batch collector logic, with a small recording engine (the real model is
exercised by the end-to-end tests)."""

import asyncio
import threading

import numpy as np
import pytest

from lingting_server.services.batching import BatchCollector
from lingting_server.wire.recognition import DecodeRequest, DecodeResult
from lingting_server.engines.base import EngineFailed, EngineOutOfMemory
from lingting_server.streaming.commands import DecodeJob
from lingting_testkit.waiting import until


class RecordingEngine:
    name, device, languages = "recording", "cpu", ()

    def __init__(self, oom_above=None):
        self.batches = []
        self.gate = threading.Event()
        self.gate.set()
        self.oom_above = oom_above
        self.fell_back = False

    def decode(self, requests):
        self.gate.wait(5)
        if self.oom_above and len(requests) > self.oom_above and not self.fell_back:
            raise EngineOutOfMemory("CUDA out of memory")
        self.batches.append([(r.kind, len(r.audio)) for r in requests])
        return [DecodeResult(f"{r.kind}:{len(r.audio)}", "en") for r in requests]

    def fallback_to_cpu(self):
        self.fell_back = True
        return True


def job(session, kind, n, seq=0):
    return DecodeJob(session, 0, seq, DecodeRequest(np.zeros(n, np.float32), kind), 0, n, 0)


async def test_requests_of_many_sessions_share_a_batch():
    engine = RecordingEngine()
    c = BatchCollector(engine, max_batch_size=4, max_wait_ms=20)
    c.start()
    futures = [c.submit(job(f"s{i}", "final", 100 + i)) for i in range(6)]
    results = await asyncio.gather(*futures)
    await c.close()
    assert [r.text for r in results] == [f"final:{100 + i}" for i in range(6)]
    assert [len(b) for b in engine.batches] == [4, 2]
    assert c.stats.batches == {4: 1, 2: 1}


async def busy_collector(max_batch_size=2):
    """A collector whose one worker is decoding a final and stays stuck on it
    until engine.gate is set: what is submitted next waits in the queue."""
    engine = RecordingEngine()
    engine.gate.clear()
    c = BatchCollector(engine, max_batch_size=max_batch_size, max_wait_ms=0)
    c.start()
    busy = c.submit(job("x", "final", 1))
    await until(lambda: c.workers_busy == 1, what="the worker took the first final")
    return engine, c, busy


async def test_finals_first_and_stale_partials_coalesced():
    engine, c, busy = await busy_collector(max_batch_size=8)
    p1 = c.submit(job("a", "partial", 10, seq=1))
    p2 = c.submit(job("a", "partial", 20, seq=2))   # replaces p1
    p3 = c.submit(job("b", "partial", 30))
    f1 = c.submit(job("c", "final", 40))
    engine.gate.set()
    assert (await p1) is None                      # dropped as stale
    results = await asyncio.gather(busy, p2, p3, f1)
    await c.close()
    assert [r.text for r in results] == ["final:1", "partial:20", "partial:30", "final:40"]
    assert engine.batches[1] == [("final", 40)]      # the final ran before the partials
    assert sorted(engine.batches[2]) == [("partial", 20), ("partial", 30)]
    assert c.stats.partials_dropped == 1


async def test_a_final_supersedes_the_waiting_partial_of_its_session():
    engine, c, _ = await busy_collector(max_batch_size=8)
    partial = c.submit(job("a", "partial", 10))
    final = c.submit(job("a", "final", 11))
    engine.gate.set()
    assert (await partial) is None
    assert (await final).text == "final:11"
    await c.close()


async def test_out_of_memory_halves_the_batch_then_falls_back():
    engine = RecordingEngine(oom_above=2)
    c = BatchCollector(engine, max_batch_size=8, max_wait_ms=20)
    c.start()
    results = await asyncio.gather(*[c.submit(job(f"s{i}", "final", i + 1)) for i in range(5)])
    await c.close()
    assert [r.text for r in results] == [f"final:{i + 1}" for i in range(5)]   # nothing lost
    assert all(len(b) <= 2 for b in engine.batches)
    assert c.stats.oom_splits >= 2


async def test_engine_failure_fails_only_that_batch():
    class Broken(RecordingEngine):
        def decode(self, requests):
            if any(len(r.audio) == 13 for r in requests):
                raise ValueError("bad audio")
            return super().decode(requests)

    c = BatchCollector(Broken(), max_batch_size=1, max_wait_ms=0)
    c.start()
    bad, good = c.submit(job("a", "final", 13)), c.submit(job("b", "final", 14))
    with pytest.raises(RuntimeError, match="bad audio"):
        await bad
    assert (await good).text == "final:14"
    await c.close()


def file_job(n, session="file"):
    j = job(session, "final", n)
    j.background = True
    return j


async def test_file_finals_yield_to_live_finals_and_take_turns_with_partials():
    engine, c, busy = await busy_collector()
    background = [c.submit(file_job(n)) for n in (20, 21, 22)]
    partial = c.submit(job("a", "partial", 10, seq=1))
    live = c.submit(job("b", "final", 30))
    assert c.queue_depth == {"final": 1, "speculative": 0, "partial": 1, "background": 3}
    engine.gate.set()
    await asyncio.gather(busy, partial, live, *background)
    await c.close()
    sizes = [[n for _, n in batch] for batch in engine.batches]
    # the live final first; then file finals and partials take turns, a batch each.
    assert sizes == [[1], [30], [20, 21], [10], [22]]
    assert c.stats.decoded["file"] == 3


async def test_a_departed_clients_file_finals_are_cancelled():
    engine, c, busy = await busy_collector()
    waiting = c.submit(file_job(20))
    after = c.submit(file_job(30, session="another file"))    # queued behind it: decoded once it is passed
    c.cancel_session("file")
    engine.gate.set()
    await asyncio.gather(busy, after)
    await c.close()
    assert waiting.cancelled() and [n for b in engine.batches for _, n in b] == [1, 30]


class DyingEngine(RecordingEngine):
    """Its worker 'dies' on the first `deaths` batches (and comes back, as ProcessEngine's does)."""

    def __init__(self, deaths):
        super().__init__()
        self.deaths = deaths

    def decode(self, requests):
        if self.deaths:
            self.deaths -= 1
            raise EngineFailed("the model worker died (exit code -9) and was restarted")
        return super().decode(requests)


async def test_a_final_whose_worker_died_is_decoded_again_on_the_new_one():
    engine = DyingEngine(deaths=1)
    c = BatchCollector(engine, max_batch_size=8, max_wait_ms=5)
    c.start()
    assert (await c.submit(job("a", "final", 100))).text == "final:100"   # the retry, on the recovered worker
    engine.deaths = 1
    with pytest.raises(RuntimeError, match="died"):       # partials are not retried: a newer one comes
        await c.submit(job("b", "partial", 50))
    assert engine.batches == [[("final", 100)]]
    # A batch that kills the worker twice is given up, saying so.
    engine.deaths = 2
    with pytest.raises(RuntimeError, match=r"died .* \(on both tries: given up\)"):
        await c.submit(job("a", "final", 200))
    await c.close()


async def test_text_work_runs_on_the_text_thread_while_the_model_goes_on(monkeypatch):
    """Hotwords, ITN and watch phrases run after the decode on the one text
    thread: never on the event loop, and not holding up the next batch."""
    import lingting_server.text.postprocess as postprocess
    threads, text_gate = [], threading.Event()

    def slow_itn(text, language):
        threads.append(threading.current_thread().name)
        text_gate.wait(5)
        return text.upper()
    monkeypatch.setattr(postprocess, "inverse_normalize", slow_itn)
    engine = RecordingEngine()
    c = BatchCollector(engine, max_batch_size=1, max_wait_ms=0)
    c.start()
    futures = [c.submit(job("a", "final", 5)), c.submit(job("b", "final", 6))]
    # both batches decode while the first one's text work waits
    await until(lambda: len(engine.batches) == 2, what="both batches decoded")
    assert not any(f.done() for f in futures)
    text_gate.set()
    results = await asyncio.gather(*futures)
    await c.close()
    assert [r.text for r in results] == ["FINAL:5", "FINAL:6"] and results[0].raw_text == "final:5"
    assert set(threads) == {"lingting-text_0"}


def lane_job(session, kind, n, **flags):
    j = job(session, kind, n)
    for name, value in flags.items():
        setattr(j, name, value)
    return j


async def test_work_goes_by_deadline_finals_speculations_first_partials_refreshes():
    engine, c, busy = await busy_collector(max_batch_size=2)
    c.max_partial_batch_size = 1
    refresh = c.submit(lane_job("a", "partial", 10))
    first = c.submit(lane_job("b", "partial", 20, first=True))
    speculative = c.submit(lane_job("c", "final", 30, speculative=True))
    final = c.submit(lane_job("d", "final", 40))
    assert c.queue_depth == {"final": 1, "speculative": 1, "partial": 2, "background": 0}
    engine.gate.set()
    await asyncio.gather(busy, refresh, first, speculative, final)
    await c.close()
    # The fired endpoint's final and the speculation share a batch; then the
    # partial that shows a new utterance's first text, then the refresh.
    assert [[n for _, n in batch] for batch in engine.batches] == [[1], [40, 30], [20], [10]]


async def test_an_expedited_speculation_goes_before_older_ones_and_a_cancelled_one_never_runs():
    engine, c, busy = await busy_collector(max_batch_size=1)
    older = c.submit(lane_job("a", "final", 10, speculative=True))
    dropped_job = lane_job("b", "final", 20, speculative=True)
    dropped = c.submit(dropped_job)
    due_job = lane_job("c", "final", 30, speculative=True)
    due = c.submit(due_job)
    c.expedite(due_job)                 # its endpoint fired
    c.cancel(dropped_job)               # its speaker went on talking
    c.cancel(lane_job("a", "final", 10, speculative=True))   # not the job that waits: nothing happens
    assert (await dropped) is None
    engine.gate.set()
    await asyncio.gather(busy, older, due)
    await c.close()
    assert [n for batch in engine.batches for _, n in batch] == [1, 30, 10]


async def test_a_departed_clients_speculation_is_still_decoded():
    engine, c, busy = await busy_collector()
    waiting = c.submit(lane_job("gone", "final", 10, speculative=True))
    c.cancel_session("gone")           # it may be the last utterance's final: history keeps it
    engine.gate.set()
    assert (await waiting).text == "final:10"
    await c.close()


async def test_workers_decode_batches_side_by_side():
    engines = [RecordingEngine(), RecordingEngine()]
    for engine in engines:
        engine.gate.clear()
    c = BatchCollector(engines, max_batch_size=1, max_wait_ms=0)
    c.start()
    futures = [c.submit(job(f"s{i}", "final", 100 + i)) for i in range(3)]
    # both workers take a batch while neither has finished
    await until(lambda: c.workers_busy == 2, what="both workers busy")
    assert c.queue_depth["final"] == 1
    for engine in engines:
        engine.gate.set()
    results = await asyncio.gather(*futures)
    await c.close()
    assert [r.text for r in results] == ["final:100", "final:101", "final:102"]
    assert sorted(len(e.batches) for e in engines) == [1, 2]


async def test_finals_due_at_once_are_shared_among_idle_workers():
    engines = [RecordingEngine(), RecordingEngine()]
    c = BatchCollector(engines, max_batch_size=8, max_wait_ms=20)
    c.start()
    results = await asyncio.gather(*[c.submit(lane_job(f"s{i}", "final", i + 1, speculative=True))
                                     for i in range(8)])
    await c.close()
    assert [r.text for r in results] == [f"final:{i + 1}" for i in range(8)]
    assert sorted(len(b) for e in engines for b in e.batches) == [4, 4]
