"""Rooms, viewer tokens, webhooks and caption outputs at the edge, in this
process on real sockets, with a recording engine (the real model and real
speech are in test_e2e_rooms.py)."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import numpy as np
import pytest
import websockets

from lingting_server.services.access import ApiKey
from lingting_server.edge import outbound
from lingting_testkit.inprocess import RecordingEngine, edge_server
from lingting_testkit.receivers import ObsServer, Receivers
from lingting_testkit.streams import events_until_closed
from lingting_testkit.synth import silence, to_s16, voice

ACME, GLOBEX, ADMIN = "acme-" + "a" * 20, "globex-" + "g" * 20, "admin-" + "z" * 20
KEYS = (ApiKey("acme", ACME), ApiKey("globex", GLOBEX), ApiKey("ops", ADMIN, admin=True))
SECRET = "hook-secret-" + "s" * 16
UTTERANCE = to_s16(np.concatenate([voice(0.8), silence(1.0)]))


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def speak(ws, utterances: int) -> None:
    for _ in range(utterances):
        for i in range(0, len(UTTERANCE), 3200):
            await ws.send(UTTERANCE[i:i + 3200])


async def refused(url: str, **kwargs) -> int:
    with pytest.raises(websockets.InvalidStatus) as exc:
        async with websockets.connect(url, **kwargs):
            pass
    return exc.value.response.status_code


async def test_rooms_are_scoped_to_their_tenant_and_a_token_reads_one_room_only(tmp_path):
    async with edge_server(keys=KEYS, history_path=str(tmp_path / "h.sqlite3")) as edge:
        async with websockets.connect(edge.ws + "/v1/stream", additional_headers=auth(ACME)) as speaker, \
                websockets.connect(edge.ws + "/v1/stream", additional_headers=auth(ACME)) as second, \
                websockets.connect(edge.ws + "/v1/stream", additional_headers=auth(GLOBEX)) as other:
            await speaker.send(json.dumps({"type": "start", "room": "support"}))
            ready = json.loads(await speaker.recv())
            assert ready["room"] == "support" and len(ready["viewer_token"]) >= 32
            await second.send(json.dumps({"type": "start", "room": "support"}))     # taken, for this tenant
            assert json.loads(await second.recv())["code"] == "room_taken"
            await other.send(json.dumps({"type": "start", "room": "support"}))      # free, for another
            other_ready = json.loads(await other.recv())
            assert other_ready["room"] == "support"

            rooms = edge.ws + "/v1/rooms/"
            token = ready["viewer_token"]
            # Another tenant finds neither the name (it sees its own room) nor the session id.
            async with websockets.connect(rooms + "support/events", additional_headers=auth(GLOBEX)) as theirs:
                assert json.loads(await theirs.recv())["session_id"] == other_ready["session_id"]
            assert await refused(rooms + ready["session_id"] + "/events", additional_headers=auth(GLOBEX)) == 404
            assert await refused(rooms + "support/events") == 401                          # no key, no token
            # The token reads its room (by name or session id), and nothing else.
            for name in ("support", ready["session_id"]):
                async with websockets.connect(f"{rooms}{name}/events?token={token}") as viewer:
                    assert json.loads(await viewer.recv())["session_id"] == ready["session_id"]
            async with websockets.connect(rooms + "support/events",
                                          subprotocols=["lingting.v1.json", f"lingting.token.{token}"]) as viewer:
                assert viewer.subprotocol == "lingting.v1.json"
                assert json.loads(await viewer.recv())["type"] == "room"
            assert await refused(f"{rooms}{other_ready['session_id']}/events?token={token}") == 403
            assert await refused(f"{rooms}support/events?token={'x' * 32}") == 401
            assert await refused(f"{edge.ws}/v1/rooms?token={token}") == 401             # not the board
            async with httpx.AsyncClient(base_url=edge.http) as http:
                for path in ("/v1/history/sessions", "/v1/rooms"):
                    assert (await http.get(path, params={"token": token})).status_code == 401
                    assert (await http.get(path, headers={"Authorization": f"Bearer {token}"})).status_code == 401
                listed = (await http.get("/v1/rooms", headers=auth(GLOBEX))).json()["rooms"]
                assert [r["session_id"] for r in listed] == [other_ready["session_id"]]
                everything = (await http.get("/v1/rooms", headers=auth(ADMIN))).json()["rooms"]
                assert len(everything) == 2
            # An admin watches any tenant's room; a tenant's board shows only its rooms.
            async with websockets.connect(rooms + ready["session_id"] + "/events", additional_headers=auth(ADMIN)):
                pass
            async with websockets.connect(edge.ws + "/v1/rooms", additional_headers=auth(GLOBEX)) as board:
                first = json.loads(await board.recv())
                assert [r["session_id"] for r in first["rooms"]] == [other_ready["session_id"]]


async def test_viewers_get_every_final_in_order_and_a_stalled_one_holds_nobody_up():
    # Long lines (18 kB each) fill the socket buffers between the server and a stalled viewer.
    async with edge_server(RecordingEngine("hello there " * 1500), viewer_queue=8) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as speaker:
            await speaker.send(json.dumps({"type": "start", "room": "loop", "partial_interval_ms": 100, "itn": False}))
            json.loads(await speaker.recv())
            viewers = [await websockets.connect(edge.ws + "/v1/rooms/loop/events") for _ in range(3)]
            watching = [asyncio.ensure_future(events_until_closed(v)) for v in viewers]
            # A stalled viewer: a small receive window (set before connecting), and it never reads.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", edge.server.port))
            stalled = await websockets.connect(edge.ws + "/v1/rooms/loop/events", sock=sock, max_queue=1)
            stalled.transport.pause_reading()
            hearing = asyncio.ensure_future(events_until_closed(speaker))
            await speak(speaker, 30)
            await speaker.send(json.dumps({"type": "stop"}))
            spoken = [e for e in await hearing if e["type"] == "final"]
            assert len(spoken) == 30
            for got in await asyncio.gather(*watching):
                assert [g["utterance"] for g in got if g["type"] == "final"] == list(range(30))
                assert got[0]["type"] == "room" and got[-1]["type"] == "room_closed"
            stalled.transport.resume_reading()
            tail = await events_until_closed(stalled)
            # What it got is in order; if the socket buffers could not take its backlog, it fell 8 events
            # behind on finals and was told so (the queue's policy is in test_rooms.py).
            finals = [t["utterance"] for t in tail if t["type"] == "final"]
            assert finals == list(range(len(finals)))
            assert finals == list(range(30)) if tail[-1]["type"] == "room_closed" else tail[-1]["code"] == "too_slow"
            assert edge.lingting.viewers == 0


async def test_webhooks_survive_a_receiver_outage_and_a_restart_signed_and_once(tmp_path):
    receivers = Receivers(SECRET)               # down at first
    hook = {"url": receivers.base + "/hook", "secret": SECRET, "events": ["final", "session_end"]}
    db = str(tmp_path / "h.sqlite3")
    private = {"webhook_allow_private": True}
    async with edge_server(RecordingEngine("hello there"), history_path=db, outputs=private) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as speaker:
            await speaker.send(json.dumps({"type": "start", "webhooks": [hook]}))
            session_id = json.loads(await speaker.recv())["session_id"]
            await speak(speaker, 3)
            await speaker.send(json.dumps({"type": "stop"}))
            finals = [e for e in await events_until_closed(speaker) if e["type"] == "final"]
        async with httpx.AsyncClient(base_url=edge.http) as http:
            stored = (await http.get(f"/v1/history/sessions/{session_id}")).json()["webhooks"]
        assert [w["event"] for w in stored] == ["final"] * 3 + ["session_end"]
        assert all(w["status"] == "pending" for w in stored) and stored[0]["attempts"] >= 1
        assert "ConnectError" in stored[0]["last_error"]
    # The server restarts with the same history; the receiver comes back.
    await receivers.up()
    try:
        async with edge_server(RecordingEngine("hello there"), history_path=db, outputs=private) as edge:
            for _ in range(200):
                if len(receivers.got.webhooks) >= 4:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)        # nothing more comes
            async with httpx.AsyncClient(base_url=edge.http) as http:
                stored = (await http.get(f"/v1/history/sessions/{session_id}")).json()["webhooks"]
    finally:
        await receivers.down()
    got = receivers.got.webhooks
    assert receivers.got.bad_signatures == 0
    assert len({key for key, _, _ in got}) == len(got) == 4                 # each once
    bodies = [body for _, _, body in got]
    assert [b["type"] for b in bodies] == ["final", "final", "final", "session_end"]     # in order
    assert [b["event"]["text"] for b in bodies[:3]] == [f["text"] for f in finals]
    assert bodies[3]["text"] == " ".join(f["text"] for f in finals) and bodies[3]["status"] == "stopped"
    assert {b["id"] for b in bodies} == {key for key, _, _ in got} == {w["delivery_id"] for w in stored}
    assert all(w["status"] == "delivered" and w["delivered_at"] for w in stored)


async def test_outputs_to_private_addresses_are_refused_unless_allowed(tmp_path):
    async with edge_server(history_path=str(tmp_path / "h.sqlite3")) as edge:
        for field, target in (("webhooks", {"url": "http://127.0.0.1:9/x", "secret": SECRET}),
                              ("webhooks", {"url": "http://[::1]/x", "secret": SECRET}),
                              ("webhooks", {"url": "http://169.254.169.254/latest", "secret": SECRET}),
                              ("captions", {"type": "youtube", "url": "http://localhost/cc?cid=1"}),
                              ("captions", {"type": "obs", "url": "ws://10.1.2.3:4455"})):
            async with websockets.connect(edge.ws + "/v1/stream") as ws:
                await ws.send(json.dumps({"type": "start", field: [target]}))
                answer = json.loads(await ws.recv())
                assert answer["type"] == "error" and answer["code"] == "output_refused", answer
    with pytest.raises(outbound.TargetRefused, match="private or loopback"):      # a name that resolves there
        await outbound.resolve("http://localhost:8080/", allow_private=False)
    async with edge_server() as edge:         # no history: webhooks have no outbox
        async with websockets.connect(edge.ws + "/v1/stream") as ws:
            await ws.send(json.dumps({"type": "start", "webhooks": [{"url": "https://example.com/x",
                                                                     "secret": SECRET}]}))
            assert json.loads(await ws.recv())["code"] == "unsupported"


async def test_captions_reach_youtube_zoom_and_obs_in_their_formats():
    receivers = Receivers(SECRET, zoom_last_seq=41)       # a captioner ran before: Zoom took 41
    obs = ObsServer("obs-password")
    await receivers.up()
    await obs.start()
    zoom_url = receivers.base + "/closedcaption?id=123&ns=abc&expire=99&spparams=id%2Cns%2Cexpire&signature=x"
    captions = [{"type": "youtube", "url": receivers.base + "/youtube/closedcaption?cid=stream-1"},
                {"type": "zoom", "url": zoom_url},
                {"type": "obs", "url": obs.url, "password": "obs-password"},
                {"type": "youtube", "url": "http://127.0.0.1:9/closedcaption?cid=gone"}]      # nobody there
    try:
        async with edge_server(RecordingEngine("hello there"), outputs={"webhook_allow_private": True}) as edge:
            async with websockets.connect(edge.ws + "/v1/stream") as speaker:
                await speaker.send(json.dumps({"type": "start", "captions": captions}))
                await speaker.recv()
                await speak(speaker, 3)
                await asyncio.sleep(4)         # the dead output's tries run out (0.5 s, 1 s apart) meanwhile
                await speaker.send(json.dumps({"type": "stop"}))
                events = await events_until_closed(speaker)
    finally:
        await receivers.down()
        await obs.stop()
    finals = [e["text"] for e in events if e["type"] == "final"]
    assert finals == ["hello there"] * 3
    assert [seq for seq, _, _ in receivers.got.youtube] == [1, 2, 3]
    assert [text for _, _, text in receivers.got.youtube] == finals
    assert [(seq, lang) for seq, lang, _ in receivers.got.zoom] == [(42, "en-US"), (43, "en-US"), (44, "en-US")]
    assert obs.captions == finals and obs.failed_identifies == 0
    assert receivers.got.refused == []
    # The output nobody answers: a non-fatal error per caption, and recognition went on.
    failures = [e for e in events if e["type"] == "error"]
    assert failures and all(e["code"] == "output_failed" and not e["fatal"] for e in failures)
    assert events[-1]["type"] == "stopped"


async def test_the_stand_in_receivers_refuse_malformed_requests():
    receivers = Receivers(SECRET)
    await receivers.up()
    try:
        async with httpx.AsyncClient(base_url=receivers.base) as http:
            text = {"Content-Type": "text/plain"}
            assert (await http.post("/youtube/closedcaption?cid=1", content="2026-01-01T00:00:00.000\nhi\n",
                                    headers=text)).status_code == 400                                 # no seq
            assert (await http.post("/youtube/closedcaption?cid=1&seq=1", content="12:00\nhi\n",
                                    headers=text)).status_code == 400                                 # bad time
            assert (await http.post("/youtube/closedcaption?cid=1&seq=1", content="2026-01-01T00:00:00.000\nhi\n",
                                    headers={"Content-Type": "application/json"})).status_code == 400
            assert (await http.post("/closedcaption?id=1&ns=a&expire=1&signature=s&lang=en-US", content="hi",
                                    headers=text)).status_code == 401                                 # no seq
            assert (await http.post("/hook", content=b"{}", headers={"X-Lingting-Signature": "t=1,v1=00"})
                    ).status_code == 401
    finally:
        await receivers.down()
    assert len(receivers.got.refused) == 5


async def test_edges_sharing_postgres_share_rooms_tokens_and_history(postgres):
    """Two edges on one PostgreSQL history: a room streamed into A is watched
    on B (live and on B's board), A's token opens it on B, its name is taken
    on B too, and B's history has A's session; tenants stay apart."""
    url = postgres.new_database()
    async with edge_server(keys=KEYS, history_path=url) as a, edge_server(keys=KEYS, history_path=url) as b:
        async with websockets.connect(b.ws + "/v1/rooms", additional_headers=auth(ACME)) as board, \
                websockets.connect(a.ws + "/v1/stream", additional_headers=auth(ACME)) as speaker:
            assert json.loads(await board.recv())["rooms"] == []
            await speaker.send(json.dumps({"type": "start", "room": "hall", "itn": False}))
            ready = json.loads(await speaker.recv())
            opened = json.loads(await board.recv())
            assert opened["type"] == "room_opened" and opened["room"] == "hall"
            async with websockets.connect(b.ws + "/v1/stream", additional_headers=auth(ACME)) as rival:
                await rival.send(json.dumps({"type": "start", "room": "hall"}))
                assert json.loads(await rival.recv())["code"] == "room_taken"          # taken on every edge
            rooms_b = b.ws + "/v1/rooms/hall/events"
            assert await refused(rooms_b, additional_headers=auth(GLOBEX)) == 404    # another tenant's
            viewer = await websockets.connect(f"{rooms_b}?token={ready['viewer_token']}")   # A's token, on B
            assert json.loads(await viewer.recv())["session_id"] == ready["session_id"]
            watching = asyncio.ensure_future(events_until_closed(viewer))
            hearing = asyncio.ensure_future(events_until_closed(speaker))
            await speak(speaker, 3)
            await speaker.send(json.dumps({"type": "stop"}))
            spoken = [e for e in await hearing if e["type"] == "final"]
            seen = await asyncio.wait_for(watching, 10)
            assert [e["text"] for e in seen if e["type"] == "final"] == [e["text"] for e in spoken]
            assert [e["utterance"] for e in seen if e["type"] == "final"] == [0, 1, 2]
            assert seen[-1]["type"] == "room_closed" and seen[-1]["finals"] == 3
            board_events = []
            while not board_events or board_events[-1]["type"] != "room_closed":
                board_events.append(json.loads(await asyncio.wait_for(board.recv(), 10)))
            assert [e["utterance"] for e in board_events if e["type"] == "final"] == [0, 1, 2]
        async with httpx.AsyncClient(base_url=b.http) as http:
            listed = (await http.get("/v1/history/sessions", headers=auth(ACME))).json()
            assert [s["id"] for s in listed["sessions"]] == [ready["session_id"]]
            assert (await http.get("/v1/history/sessions", headers=auth(GLOBEX))).json()["sessions"] == []
            found = (await http.get("/v1/history/search", params={"q": "hello"}, headers=auth(ACME))).json()
            assert {r["session_id"] for r in found["results"]} == {ready["session_id"]}


# IPv6 forms that carry an IPv4 address reach that IPv4 host (a dual stack, a NAT64 gateway, a 6to4 or
# Teredo relay): each is judged by the address it carries (issue 34.13).
CARRYING_PRIVATE = ("::127.0.0.1", "::10.0.0.1", "::ffff:127.0.0.1", "::ffff:0:127.0.0.1", "::ffff:0:169.254.169.254",
                    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1", "64:ff9b:1:7f00:1::",
                    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe:1::1",
                    "2001:0:4136:e378:8000:63bf:80ff:fffe",     # Teredo, client 127.0.0.1
                    "2001:0:a00:1:8000:63bf:f7f7:f7f7")        # Teredo, server 10.0.0.1
CARRYING_PUBLIC = ("::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "::ffff:0:8.8.8.8")


@pytest.mark.parametrize("address", CARRYING_PRIVATE)
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(address):
    assert not outbound.is_public(address)
    assert outbound.literal_refusal(f"http://[{address}]:8080/hook", allow_private=False).code == "output_refused"


@pytest.mark.parametrize("address", (*CARRYING_PUBLIC, "2001:4860:4860::8888", "8.8.8.8"))
def test_ipv6_forms_of_public_ipv4_addresses_and_plain_public_ones_pass(address):
    assert outbound.is_public(address)


class HugeAnswers:
    """A receiver that answers every request with `body_bytes` (sent as fast as
    the reader takes it, or `trickle`: one byte a second), counting what it got out."""

    def __init__(self, body_bytes: int, status: int = 200, trickle: bool = False):
        self.body_bytes, self.status, self.trickle = body_bytes, status, trickle
        self.sent = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> HugeAnswers:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * (1 << 20)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 {self.status} OK\r\nContent-Length: {self.body_bytes}\r\n"
                         "Content-Type: text/plain\r\n\r\n".encode())
            left = self.body_bytes
            while left:
                part = chunk[:1] if self.trickle else chunk[:left]
                writer.write(part)
                await writer.drain()
                self.sent += len(part)
                left -= len(part)
                if self.trickle:
                    await asyncio.sleep(1)
        except (OSError, asyncio.IncompleteReadError):
            pass                # the reader hung up: what this receiver is here to see
        finally:
            writer.close()


async def test_an_output_reads_a_bounded_prefix_of_a_huge_answer_and_hangs_up():
    """A receiver answering 256 MB costs the server a small prefix, not 256 MB of memory (issue 34.4)."""
    async with HugeAnswers(256 << 20) as huge, outbound.client() as http:
        answer = await outbound.request(http, "POST", huge.url + "/hook", allow_private=True, content=b"{}")
        await asyncio.sleep(0.2)
        assert huge.sent < 32 << 20                # the socket buffers' worth, then the connection closed
        assert answer.status_code == 200 and len(answer.body) <= outbound.MAX_ANSWER_BYTES


async def test_an_output_whose_answer_trickles_gives_up_at_the_exchange_deadline(monkeypatch):
    monkeypatch.setattr(outbound, "EXCHANGE_S", 1.5)
    async with HugeAnswers(1 << 20, trickle=True) as slow, outbound.client() as http:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.TimeoutException, match="1.5 s"):
            await outbound.request(http, "POST", slow.url + "/hook", allow_private=True, content=b"{}")
        assert asyncio.get_running_loop().time() - started < 3


async def test_webhooks_and_captions_to_a_receiver_answering_hugely_go_on():
    """Deliveries to receivers answering 64 MB errors: each caption is reported with a short prefix of the
    answer, and recognition goes on."""
    async with HugeAnswers(64 << 20, status=500) as huge:
        captions = [{"type": "youtube", "url": huge.url + "/cc?cid=1"}]
        async with edge_server(RecordingEngine("hello there"), outputs={"webhook_allow_private": True}) as edge:
            async with websockets.connect(edge.ws + "/v1/stream") as speaker:
                await speaker.send(json.dumps({"type": "start", "captions": captions}))
                await speaker.recv()
                await speak(speaker, 1)
                await asyncio.sleep(4)         # three tries, 0.5 s and 1 s apart
                await speaker.send(json.dumps({"type": "stop"}))
                events = await events_until_closed(speaker)
        failures = [e for e in events if e["type"] == "error"]
        assert failures and all(e["code"] == "output_failed" and len(e["message"]) < 400 for e in failures)
        assert events[-1]["type"] == "stopped"
        assert huge.sent < 3 * (32 << 20), huge.sent


async def test_an_obs_output_refuses_oversized_frames_from_its_receiver():
    """obs-websocket's messages are small; a receiver padding them to 512 KiB is cut off at
    MAX_ANSWER_BYTES (not the library's 1 MiB a message, 16 queued), and the stream goes on (issue 34.4)."""
    padding = "p" * (512 << 10)
    answered = []

    async def padded_obs(ws) -> None:
        await ws.send(json.dumps({"op": 0, "d": {"rpcVersion": 1, "padding": padding}}))
        await ws.recv()
        await ws.send(json.dumps({"op": 2, "d": {"negotiatedRpcVersion": 1, "padding": padding}}))
        async for message in ws:
            answered.append(message)
            request_id = json.loads(message)["d"]["requestId"]
            await ws.send(json.dumps({"op": 7, "d": {"requestId": request_id, "padding": padding,
                                                     "requestStatus": {"result": True, "code": 100}}}))

    async with websockets.serve(padded_obs, "127.0.0.1", 0, subprotocols=["obswebsocket.json"]) as obs:
        url = f"ws://127.0.0.1:{obs.sockets[0].getsockname()[1]}"
        async with edge_server(RecordingEngine("hello there"), outputs={"webhook_allow_private": True}) as edge:
            async with websockets.connect(edge.ws + "/v1/stream") as speaker:
                await speaker.send(json.dumps({"type": "start", "captions": [{"type": "obs", "url": url}]}))
                await speaker.recv()
                await speak(speaker, 1)
                await asyncio.sleep(4)         # three tries, 0.5 s and 1 s apart
                await speaker.send(json.dumps({"type": "stop"}))
                events = await events_until_closed(speaker)
    failures = [e for e in events if e["type"] == "error"]
    assert answered == [] and failures and all(e["code"] == "output_failed" for e in failures), failures
    assert "1009" in failures[0]["message"] or "too big" in failures[0]["message"]
    assert events[-1]["type"] == "stopped"


async def test_a_viewer_that_sends_is_read_slowly_and_one_that_sends_much_is_closed():
    async with edge_server(RecordingEngine("hello")) as edge:
        async with websockets.connect(edge.ws + "/v1/stream") as speaker:
            await speaker.send(json.dumps({"type": "start", "room": "quiet"}))
            json.loads(await speaker.recv())
            async with websockets.connect(edge.ws + "/v1/rooms/quiet/events") as viewer:
                assert json.loads(await viewer.recv())["type"] == "room"
                await viewer.send("x" * 5000)                  # viewers only listen
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(viewer.recv(), 5)
                assert viewer.close_code == 1009
