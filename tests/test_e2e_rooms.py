"""End to end with real speech and the real model: one speaker streams two
clips from ../shared/audio in real time into a room, while

- three viewers (one by viewer token, two by API key) and a board watch it,
  a late joiner arrives after the first final, and a stalled viewer never reads;
- its webhook receiver is down for the first 30 s, then comes up;
- its captions go to local YouTube, Zoom and obs-websocket 5 stand-ins.

Then each part's outcome is checked on its own."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest
import websockets

from lingting_client import LingtingClient, StreamOptions
from lingting_testkit.corpus import read_wav
from lingting_testkit.receivers import ObsServer, Receivers
from lingting_testkit.servers import start_server, stop_server
from lingting_testkit.streams import check_event_grammar, finals

pytestmark = pytest.mark.e2e
ACME, GLOBEX = "acme-" + "a" * 24, "globex-" + "g" * 24
SECRET = "e2e-hook-secret-" + "x" * 16
OUTAGE_S = 30.0


@pytest.fixture(scope="module")
def keyed_server():
    running = start_server("--webhook-allow-private", "--max-connections", "200",
                           env={"LINGTING_API_KEYS": f"acme:{ACME},globex:{GLOBEX}"})
    yield running
    stop_server(running)


def speech(shared_audio) -> bytes:
    parts = []
    for name in ("en/jfk.wav", "en/leopard_test.wav"):
        samples, rate = read_wav(shared_audio / name)
        assert rate == 16000
        parts += [samples, np.zeros(int(1.5 * rate), "<i2")]
    return np.concatenate(parts).astype("<i2").tobytes()


async def collect(ws, into: list) -> None:
    try:
        async for message in ws:
            into.append(json.loads(message) | {"received_at": time.monotonic()})
    except websockets.ConnectionClosed:
        pass


@pytest.fixture(scope="module")
def town_hall(keyed_server, shared_audio):
    return asyncio.run(_town_hall(keyed_server, speech(shared_audio)))


async def _town_hall(server, pcm: bytes) -> dict:
    rooms = server.http.replace("http", "ws", 1) + "/v1/rooms/"
    key = {"Authorization": f"Bearer {ACME}"}
    receivers = Receivers(SECRET, zoom_last_seq=7)      # YouTube and Zoom
    hooks = Receivers(SECRET)                           # the webhook receiver: down (nothing listens) for 30 s
    obs = ObsServer("obs-secret")
    await obs.start()
    await receivers.up()
    hook_down_at = time.monotonic()
    out: dict = {"viewers": [[], [], []], "late": [], "stalled": [], "board": [], "receivers": receivers,
                 "hooks": hooks, "obs": obs}
    options = StreamOptions(language="en", room="town-hall", webhooks=[
        {"url": hooks.base + "/hook", "secret": SECRET}], captions=[
        {"type": "youtube", "url": receivers.base + "/youtube/closedcaption?cid=live-1"},
        {"type": "zoom", "url": receivers.base + "/closedcaption?id=9&ns=n&expire=1&spparams=id&signature=s"},
        {"type": "obs", "url": obs.url, "password": "obs-secret"}])
    speaker = LingtingClient(server.url, api_key=ACME)
    tasks, sockets = [], []
    events, wall_started = [], None
    async for event in speaker.stream(pcm, options):
        events.append(event)
        if event["type"] == "ready":
            wall_started = time.time()
            out["ready"] = event
            token = event["viewer_token"]
            for n, headers, protocols in ((0, {}, ["lingting.v1.json", f"lingting.token.{token}"]),
                                          (1, key, None), (2, key, None)):
                ws = await websockets.connect(rooms + "town-hall/events", additional_headers=headers,
                                              subprotocols=protocols)
                sockets.append(ws)
                tasks.append(asyncio.ensure_future(collect(ws, out["viewers"][n])))
            board = await websockets.connect(rooms[:-1], additional_headers=key)
            watching_board = asyncio.ensure_future(collect(board, out["board"]))
            stalled = await websockets.connect(rooms + "town-hall/events", additional_headers=key, max_queue=1)
            stalled.transport.pause_reading()
        elif event["type"] == "final" and not out["late"]:
            late = await websockets.connect(f"{rooms}{out['ready']['session_id']}/events?token={token}")
            tasks.append(asyncio.ensure_future(collect(late, out["late"])))
            out["late"].append({"type": "joined"})
    out["speaker"], out["wall_started"] = events, wall_started
    out["speaker_done_at"] = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await asyncio.sleep(0.5)
    await board.close()             # a board stays open: the viewer leaves
    await watching_board
    out["stalled_read_before_done"] = len(out["stalled"])
    stalled.transport.resume_reading()
    await collect(stalled, out["stalled"])
    # The webhook receiver comes back 30 s after it went down; everything must arrive once.
    await asyncio.sleep(max(0.0, hook_down_at + OUTAGE_S - time.monotonic()))
    await hooks.up()
    finals = sum(1 for e in events if e["type"] == "final")
    deadline = time.monotonic() + 60
    while len(hooks.got.webhooks) < finals + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)        # nothing more should come
    async with httpx.AsyncClient(base_url=server.http, headers=key) as http:
        out["stored"] = (await http.get(f"/v1/history/sessions/{out['ready']['session_id']}")).json()
    await receivers.down()
    await hooks.down()
    await obs.stop()
    return out


def test_three_viewers_and_a_late_joiner_get_every_final_in_order(town_hall):
    spoken = finals(town_hall["speaker"], "utterance", "text")
    check_event_grammar(town_hall["speaker"])
    assert len(spoken) >= 2 and "ask not what your country" in " ".join(t for _, t in spoken).lower()
    for viewer in town_hall["viewers"]:
        assert viewer[0]["type"] == "room" and viewer[0]["room"] == "town-hall"
        assert finals(viewer, "utterance", "text") == spoken
        assert viewer[-1] == {"type": "room_closed", "room": "town-hall", "reason": "stopped",
                              "session_id": town_hall["ready"]["session_id"], "finals": len(spoken),
                              "received_at": viewer[-1]["received_at"]}
        assert any(e["type"] == "partial" for e in viewer)       # live, not only the finals
    late = town_hall["late"][1:]
    assert late[0]["type"] == "room" and late[0]["backlog"] >= 1
    assert finals(late, "utterance", "text") == spoken            # the backlog, then live
    board = town_hall["board"]
    assert any(e["type"] == "final" and e["room"] == "town-hall" for e in board)
    assert board[-1]["type"] == "room_closed"


def test_a_stalled_viewer_does_not_hold_up_the_speaker(town_hall):
    assert town_hall["stalled_read_before_done"] == 0           # it read nothing while the speaker got all
    spoken = finals(town_hall["speaker"], "utterance", "text")
    assert finals(town_hall["stalled"], "utterance", "text") == spoken     # and it loses no final after


async def test_a_viewer_token_reads_its_room_and_nothing_else(keyed_server, town_hall):
    token = town_hall["ready"]["viewer_token"]
    rooms = keyed_server.http.replace("http", "ws", 1) + "/v1/rooms/"
    other = LingtingClient(keyed_server.url, api_key=GLOBEX)
    async for event in other.stream(np.zeros(8000, "<i2").tobytes(), StreamOptions(room="globex-room", speed=0)):
        if event["type"] == "ready":
            for url in (f"{rooms}globex-room/events?token={token}", f"{rooms}{event['session_id']}/events?token="
                        f"{token}", f"{rooms[:-1]}?token={token}"):
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(url):
                        pass
                assert refused.value.response.status_code in (401, 403)
    async with httpx.AsyncClient(base_url=keyed_server.http) as http:
        for path in ("/v1/history/sessions", f"/v1/history/sessions/{town_hall['ready']['session_id']}"):
            assert (await http.get(path, params={"token": token})).status_code == 401
            assert (await http.get(path, headers={"Authorization": f"Bearer {token}"})).status_code == 401
        # The room ended with its stream: the token opens nothing now.
        assert (await http.get("/v1/rooms", headers={"Authorization": f"Bearer {GLOBEX}"})).json()["rooms"] == []
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{rooms}town-hall/events?token={token}"):
            pass


def test_webhooks_arrive_once_each_signed_after_a_30_s_outage(town_hall):
    got = town_hall["hooks"].got
    spoken = finals(town_hall["speaker"], "utterance", "text")
    assert got.bad_signatures == 0
    keys = [key for key, _, _ in got.webhooks]
    assert len(keys) == len(set(keys)) == len(spoken) + 1
    bodies = [body for _, _, body in got.webhooks]
    assert [(b["event"]["utterance"], b["event"]["text"]) for b in bodies[:-1]] == spoken
    assert bodies[-1]["type"] == "session_end" and bodies[-1]["room"] == "town-hall"
    assert [u["text"] for u in bodies[-1]["utterances"]] == [t for _, t in spoken]
    deliveries = town_hall["stored"]["webhooks"]
    assert all(d["status"] == "delivered" for d in deliveries) and len(deliveries) == len(keys)
    assert max(d["attempts"] for d in deliveries) >= 2               # the outage was felt, and retried through
    assert "ConnectError" in str([d["last_error"] for d in deliveries])


def test_captions_reach_youtube_zoom_and_obs_with_seq_and_time(town_hall):
    got, spoken = town_hall["receivers"].got, [t for t in finals(town_hall["speaker"]) if t]
    assert got.refused == []
    assert [text for _, _, text in got.youtube] == spoken
    assert [seq for seq, _, _ in got.youtube] == list(range(1, len(spoken) + 1))
    # Each caption's time is when its words were spoken: the stream's start plus the utterance's start.
    started = town_hall["wall_started"]
    for (_, stamp, _), final in zip(got.youtube, [e for e in town_hall["speaker"] if e["type"] == "final"]):
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
        assert abs(at - (started + final["start_ms"] / 1000)) < 1.5, (stamp, final["start_ms"])
    assert [(seq, text) for seq, _, text in got.zoom] == list(zip(range(8, 8 + len(spoken)), spoken))
    assert town_hall["obs"].captions == spoken and town_hall["obs"].failed_identifies == 0
