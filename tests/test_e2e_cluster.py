"""Lingting on a real local Ray cluster (a head and a second node, each its
own `ray start`) with a real PostgreSQL history, real speech and the real model:

- streams through the Serve ingress (deploy/serve.yaml, 2 recognizer replicas,
  one per node) give the finals the single-machine server gives;
- a recognizer replica killed while it decodes loses no final and closes no stream;
- two plain edges (`lingting-server --cluster`) share one history, and a viewer
  on edge B follows a room streamed into edge A (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
import websockets

from lingting_client import StreamOptions
from lingting_server.services.history.store import open_store
from lingting_testkit.corpus import read_wav
from lingting_testkit.ray_cluster import ENV, running_ray_cluster, serve_config, serve_run
from lingting_testkit.servers import free_port, start_server, stop_server
from lingting_testkit.streams import check_event_grammar, finals, stream_events

pytestmark = pytest.mark.e2e
ACME, GLOBEX = "acme-" + "a" * 24, "globex-" + "g" * 24
KEYS = f"acme:{ACME},globex:{GLOBEX}"


def clips(shared_audio, *names: str) -> bytes:
    parts = []
    for name in names:
        samples, rate = read_wav(shared_audio / name)
        assert rate == 16000
        parts += [samples, np.zeros(int(1.2 * rate), "<i2")]
    return np.concatenate(parts).astype("<i2").tobytes()


def spoken(events: list[dict]) -> list[str]:
    return [text for text in finals(events) if len(text.split()) > 1]


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        with running_ray_cluster() as cluster:
            yield cluster
    except RuntimeError as exc:
        if "not installed" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture(scope="module")
def history_url(postgres):
    return postgres.new_database()


@pytest.fixture(scope="module")
def ingress(ray_cluster, history_url):
    """deploy/serve.yaml on the cluster: 2 recognizer replicas (one per node), 1 edge, the PostgreSQL history."""
    config = serve_config(free_port(), ["--history-db", history_url, "--max-connections-per-ip", "100"],
                          recognizers=2)
    http = serve_run(ray_cluster, config)
    return http.replace("http://", "ws://") + "/v1/stream", http


async def test_streams_through_the_serve_ingress_give_the_single_servers_finals(ingress, server, shared_audio,
                                                                              history_url):
    url, http = ingress
    talks = [clips(shared_audio, "en/jfk.wav", "en/leopard_test.wav"),
             clips(shared_audio, "en/librispeech-1995-1837-0001.wav", "en/ps_goforward.wav")]
    options = StreamOptions(speed=2.0, language="en")
    on_ray = await asyncio.gather(*(stream_events(url, talk, options) for talk in talks))
    alone = await asyncio.gather(*(stream_events(server.url, talk, options) for talk in talks))
    for cluster_events, single_events in zip(on_ray, alone):
        check_event_grammar(cluster_events)
        assert finals(cluster_events) == finals(single_events)
        assert len(finals(cluster_events)) >= 2
    assert "ask not what your country can do for you" in " ".join(finals(on_ray[0]))
    health = httpx.get(http + "/health").json()
    assert health["engine"] == "ray" and health["model"] == "whisper-base"
    # Stored in the shared PostgreSQL history before the client heard them.
    store = open_store(history_url)
    try:
        stored = store.get_session(on_ray[0][0]["session_id"])
        assert [u["text"] for u in stored["utterances"]] == finals(on_ray[0])
    finally:
        store.close()


async def test_a_recognizer_replica_killed_mid_batch_loses_no_final(ingress, ray_cluster, shared_audio, server):
    url, http = ingress
    talk = clips(shared_audio, "long/en_sense_and_sensibility_5utt.wav")
    options = StreamOptions(speed=1.5, language="en")
    async def resent() -> int:       # batches the edge sent again after their replica died
        async with httpx.AsyncClient() as client:
            return (await client.get(http + "/health")).json()["worker_restarts"]

    before = await resent()
    streaming = asyncio.ensure_future(stream_events(url, talk, options))
    await asyncio.sleep(5)                     # partials are decoding on both replicas by now
    killed: list[int] = []
    # Kill a replica while it decodes (it is using the CPU); if its batch had just
    # finished (no batch was sent again), kill another, up to three times.
    while len(killed) < 3 and not streaming.done():
        victims = [p for p in ray_cluster.replicas() if p.pid not in killed]
        for proc in victims:
            proc.cpu_percent(None)
        await asyncio.sleep(0.03)
        usage = {proc: proc.cpu_percent(None) for proc in victims}
        busy = max(usage, key=usage.get, default=None)
        if busy is None or usage[busy] < 50:
            continue
        os.kill(busy.pid, signal.SIGKILL)
        killed.append(busy.pid)
        await asyncio.sleep(3)
        if await resent() > before:
            break
    assert killed
    events = await streaming
    check_event_grammar(events)                 # ended with stopped: the stream never closed
    assert not [e for e in events if e["type"] == "error"]
    reference = await stream_events(server.url, talk, options)
    assert len(finals(events)) == len(finals(reference))     # every utterance has its final
    # ... with the same text; a one-word final on the noise after the speech ("you", or
    # nothing) depends on when the stop arrives, on either server, so it is not compared.
    assert spoken(events) == spoken(reference)
    assert await resent() > before              # a batch went to the other replica
    deadline = time.monotonic() + 120
    while len(ray_cluster.replicas()) < 2 and time.monotonic() < deadline:   # Serve replaces it
        await asyncio.sleep(1)
    assert not set(killed) & {p.pid for p in ray_cluster.replicas()} and len(ray_cluster.replicas()) == 2


@pytest.fixture(scope="module")
def two_edges(ingress, ray_cluster, history_url):
    """Two plain edges on the cluster's recognizer, sharing the PostgreSQL history."""
    env = {**ENV, "LINGTING_API_KEYS": KEYS}
    edges = [start_server("--cluster", ray_cluster.address, "--history-db", history_url, env=env)
             for _ in range(2)]
    yield edges
    for edge in edges:
        stop_server(edge)


async def test_two_edges_share_the_history_and_a_viewer_on_b_follows_a_room_on_a(two_edges, shared_audio):
    a, b = two_edges
    talk = clips(shared_audio, "en/jfk.wav", "en/leopard_test.wav")
    options = StreamOptions(speed=2.0, language="en", room="briefing")
    b_rooms = b.http.replace("http", "ws") + "/v1/rooms/briefing/events"
    viewed: list[dict] = []

    async def view(token: str) -> None:
        async with websockets.connect(f"{b_rooms}?token={token}") as viewer:
            async for message in viewer:
                viewed.append(json.loads(message))

    from lingting_client import LingtingClient
    client = LingtingClient(a.url, api_key=ACME)
    events, watching = [], None
    async for event in client.stream(talk, options):
        events.append(event)
        if event["type"] == "ready":
            # A's token opens the room on B; another tenant finds nothing there.
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(b_rooms, additional_headers={"Authorization": f"Bearer {GLOBEX}"}):
                    pass
            assert refused.value.response.status_code == 404
            watching = asyncio.ensure_future(view(event["viewer_token"]))
    await asyncio.wait_for(watching, 15)
    check_event_grammar(events)
    assert viewed[0]["type"] == "room" and viewed[-1]["type"] == "room_closed"
    assert finals(viewed) == finals(events) and len(finals(events)) >= 2
    session_id = events[0]["session_id"]
    async with httpx.AsyncClient(base_url=b.http, headers={"Authorization": f"Bearer {ACME}"}) as http:
        stored = (await http.get(f"/v1/history/sessions/{session_id}")).json()
        assert [u["text"] for u in stored["utterances"]] == finals(events)
        found = (await http.get("/v1/history/search", params={"q": "your country"})).json()["results"]
        assert session_id in {r["session_id"] for r in found}
        other = await http.get(f"/v1/history/sessions/{session_id}", headers={"Authorization": f"Bearer {GLOBEX}"})
        assert other.status_code == 404
