"""Rooms and their viewers' queues, and the outputs' parsing and signing:
small synthetic events, no sockets."""

from __future__ import annotations

import asyncio

import pytest

from lingting_server.wire.errors import ProtocolError
from lingting_server.protocols.outputs import parse_captions, parse_webhooks, sign, verify
from lingting_server.protocols.messages import parse_start
from lingting_server.services.rooms import NoViewerSlot, Rooms, Viewer, ViewerCaps, ViewerSlot, ViewerSlots
from lingting_server.wire import events
from lingting_testkit.streams import final


def partial(utterance: int, text: str) -> events.Partial:
    return events.Partial(utterance, 0, 100, text, "", "en")


def drain(viewer: Viewer) -> list[dict]:
    out = list(viewer.queue)
    viewer.queue.clear()
    return out


def test_a_late_joiner_gets_the_room_then_the_finals_so_far_then_live():
    rooms = Rooms()
    room = rooms.open("s1", "acme", "town-hall", {"mode": "stream"})
    rooms.publish(room, partial(0, "good"))
    rooms.publish(room, final(0, "good morning"))
    rooms.publish(room, events.SpeechStarted(1, 1000))        # the speaker's own traffic: not shared
    rooms.publish(room, final(1, "welcome"))
    late = rooms.viewer()
    room.joined(late)
    rooms.publish(room, partial(2, "to the"))
    got = drain(late)
    assert [g["type"] for g in got] == ["room", "final", "final", "partial"]
    assert got[0]["room"] == "town-hall" and got[0]["backlog"] == 2 and not got[0]["backlog_truncated"]
    assert [g["text"] for g in got[1:]] == ["good morning", "welcome", "to the"]
    rooms.close(room, "stopped")
    assert drain(late) == [{"type": "room_closed", "room": "town-hall", "session_id": "s1", "reason": "stopped",
                            "finals": 2}]
    assert rooms.find("acme", "town-hall") is None


def test_a_slow_viewer_loses_old_partials_never_finals():
    viewer = Viewer(limit=4)
    viewer.offer(final(0, "a").to_wire())
    for n in range(3):
        viewer.offer(partial(1, "b" * (n + 1)).to_wire())     # a newer partial of a line replaces the last
    assert [w.get("text") for w in viewer.queue] == ["a", "bbb"]
    viewer.offer(final(1, "b!").to_wire())
    viewer.offer(partial(2, "c").to_wire())
    viewer.offer(final(2, "c!").to_wire())                     # full: the oldest partial goes
    assert [w["text"] for w in viewer.queue] == ["a", "b!", "c", "c!"]
    viewer.offer(final(3, "d").to_wire())                      # full of finals: a partial makes room first
    assert [w["text"] for w in viewer.queue if w["type"] == "final"] == ["a", "b!", "c!", "d"]
    viewer.offer(final(4, "e").to_wire())                      # nothing to drop: this viewer cannot keep up
    assert viewer.ended and viewer.queue[-1]["code"] == "too_slow"
    assert [w["text"] for w in list(viewer.queue)[:-1]] == ["a", "b!", "c!", "d"]


def test_rooms_are_per_tenant_and_a_token_opens_one_room():
    rooms = Rooms()
    a = rooms.open("s1", "acme", "support", {})
    with pytest.raises(ProtocolError) as taken:
        rooms.check_free("acme", "support")
    assert taken.value.code == "room_taken"
    b = rooms.open("s2", "globex", "support", {})             # another tenant may use the same name
    assert rooms.find("acme", "support") is a and rooms.find("globex", "support") is b
    assert rooms.find("acme", "s2") is None                   # another tenant's session id: not found
    assert rooms.find(None, "s2") is b                        # an admin sees it
    assert rooms.by_token(a.token) is a and rooms.by_token(b.token) is b and rooms.by_token("x" * 32) is None
    assert [r.session_id for r in rooms.listed("acme")] == ["s1"]


def test_a_board_sees_its_tenants_rooms_only():
    rooms = Rooms()
    board = rooms.watch_all("acme")
    mine = rooms.open("s1", "acme", None, {})
    theirs = rooms.open("s2", "globex", None, {})
    rooms.publish(mine, events.Alert("a1", "confirmed", "hold", "hold hold", None, 0, 500))
    rooms.publish(theirs, final(0, "secret"))
    got = drain(board)
    assert [g["type"] for g in got] == ["rooms", "room_opened", "alert"]
    assert got[2]["room"] == "s1" and "secret" not in str(got)


async def test_a_viewer_waits_for_its_next_event():
    viewer = Viewer()
    waiting = asyncio.ensure_future(viewer.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    viewer.offer(final(0, "x").to_wire())
    assert (await waiting)["text"] == "x"
    viewer.end({"type": "room_closed"})
    assert (await viewer.next())["type"] == "room_closed" and await viewer.next() is None


def test_start_takes_room_webhooks_and_captions_and_refuses_bad_ones():
    config = parse_start({"type": "start", "room": "launch-1",
                          "webhooks": [{"url": "https://hooks.example.com/x", "secret": "s" * 16, "events": ["alert"]}],
                          "captions": [{"type": "zoom", "url": "https://wmcc.zoom.us/closedcaption?id=1&signature=z"},
                                       {"type": "obs", "url": "ws://obs.example.com:4455", "password": "pw"}]})
    assert config.room == "launch-1" and config.webhooks[0].events == {"alert"}
    assert config.captions[0].lang == "en-US"
    summary = config.summary()     # what history keeps: no secrets, no token-bearing query
    assert "s" * 16 not in str(summary) and "pw" not in str(summary) and "signature" not in str(summary)
    for bad in ({"room": "no spaces"}, {"room": ""}, {"webhooks": [{"url": "https://x.example"}]},
                {"webhooks": [{"url": "ftp://x", "secret": "s" * 16}]},
                {"captions": [{"type": "teletext", "url": "https://x.example"}]},
                {"captions": [{"type": "obs", "url": "https://x.example"}]},
                {"captions": [{"type": "youtube", "url": "https://user:pw@x.example"}]}):
        with pytest.raises(ProtocolError):
            parse_start({"type": "start", **bad})
    assert parse_webhooks([]) == () and parse_captions([]) == ()


def test_signatures_verify_and_expire():
    body = b'{"type":"final"}'
    header = sign("k" * 16, body, timestamp=1_000_000)
    assert verify("k" * 16, header, body, now=1_000_100)
    assert not verify("k" * 16, header, body + b" ", now=1_000_100)      # changed body
    assert not verify("j" * 16, header, body, now=1_000_100)             # another secret
    assert not verify("k" * 16, header, body, now=1_000_000 + 301)       # replayed later
    assert not verify("k" * 16, "nonsense", body)


def test_two_edges_share_rooms_through_their_bus_messages():
    """What one edge's Rooms tells its bus, applied by another's (as edge/room_bus.py carries it)."""
    from lingting_server.edge.room_bus import encode
    key = b"k" * 32
    a, b = Rooms(token_key=key), Rooms(token_key=key)
    a.bus = lambda message: b.apply(message)
    board, other_board = b.watch_all("acme"), b.watch_all("globex")
    room = a.open("s1", "acme", "hall", {"mode": "stream"})
    remote = b.find("acme", "hall")
    assert remote is not None and remote.remote and b.find("globex", "hall") is None
    assert b.by_token(room.token) is remote                       # a token works on every edge
    with pytest.raises(ProtocolError, match="in use"):
        b.check_free("acme", "hall")                              # the name is taken on every edge
    viewer = b.viewer()
    remote.joined(viewer)
    a.publish(room, final(0, "good morning"))
    a.publish(room, partial(1, "wel"))
    a.speaker_left(room)
    b.check_free("acme", "hall")                                  # its speaker left: free again
    a.close(room, "stopped")
    assert [w["type"] for w in drain(viewer)] == ["room", "final", "partial", "room_closed"]
    assert [w["type"] for w in drain(board)] == ["rooms", "room_opened", "final", "partial", "room_closed"]
    assert [w["type"] for w in drain(other_board)] == ["rooms"]      # another tenant's board hears nothing
    assert b.find("acme", "hall") is None
    # A late edge asks (hello): the others announce their rooms; a lost bus closes them.
    c = Rooms(token_key=key)
    room2 = a.open("s2", "acme", None, {})
    a.bus = c.apply
    a.announce()
    assert c.find("acme", "s2").remote and c.find(None, "s2").token == room2.token
    c.drop_remote()
    assert c.find("acme", "s2") is None
    # A notification holds 8000 bytes: a big final goes without its words, a bigger one not at all.
    words = [{"word": "w", "start_ms": i, "end_ms": i + 1, "probability": 0.9} for i in range(400)]
    big = encode({"op": "event", "session_id": "s", "event": {"type": "final", "text": "x", "words": words}})
    assert big is not None and "words" not in big
    assert encode({"op": "event", "session_id": "s", "event": {"type": "final", "text": "x" * 9000}}) is None


def test_viewer_slots_give_each_address_token_and_tenant_a_share_and_keep_some_for_boards():
    """Issue 34.7: one token from one address took every viewer slot, and other tenants' viewers and
    boards were refused."""
    caps = ViewerCaps(total=10, per_ip=3, per_token=4, per_tenant=6, for_boards=2)
    slots = ViewerSlots()

    def refusal(slot: ViewerSlot) -> str | None:
        try:
            slots.take(slot, caps)
        except NoViewerSlot as exc:
            return f"{exc.status} {exc.code} {exc.message}"
        return None

    assert [refusal(ViewerSlot(False, "203.0.113.7", "acme", "t1")) for _ in range(4)][:3] == [None] * 3
    assert "--max-viewers-per-ip" in refusal(ViewerSlot(False, "203.0.113.7", "acme", "t1"))
    assert refusal(ViewerSlot(False, "10.0.0.1", "acme", "t1")) is None                # the token's 4th
    assert refusal(ViewerSlot(False, "10.0.0.2", "acme", "t1")).startswith("429 key_limit this viewer token")
    assert refusal(ViewerSlot(False, "10.0.0.3", "acme", "t2")) is None
    assert refusal(ViewerSlot(True, "10.0.0.4", "acme", None)) is None                  # a board: 6th of acme
    assert "--max-viewers-per-tenant" in refusal(ViewerSlot(False, "10.0.0.5", "acme", "t2"))
    # Another tenant gets in; room viewers stop short of the boards' slots; boards and admins go on.
    assert [refusal(ViewerSlot(False, f"10.1.0.{n}", "globex", "t3")) for n in range(3)] == [None] * 3
    assert "--viewers-reserved-for-boards" in refusal(ViewerSlot(False, "10.1.0.9", "globex", "t3"))
    assert refusal(ViewerSlot(True, "10.2.0.1", None, None)) is None                    # an admin's board
    assert refusal(ViewerSlot(True, "10.2.0.2", "globex", None)).startswith("503 overloaded")   # all 10 held
    # Slots given back are free again, and nothing is left behind per address, token or tenant.
    slots.give_back(ViewerSlot(False, "203.0.113.7", "acme", "t1"))
    assert refusal(ViewerSlot(False, "203.0.113.7", "acme", "t1")) is None
    for slot in [ViewerSlot(False, "203.0.113.7", "acme", "t1")] * 3 + [
            ViewerSlot(False, "10.0.0.1", "acme", "t1"), ViewerSlot(False, "10.0.0.3", "acme", "t2"),
            ViewerSlot(True, "10.0.0.4", "acme", None), ViewerSlot(False, "10.1.0.0", "globex", "t3"),
            ViewerSlot(False, "10.1.0.1", "globex", "t3"), ViewerSlot(False, "10.1.0.2", "globex", "t3"),
            ViewerSlot(True, "10.2.0.1", None, None)]:
        slots.give_back(slot)
    assert (slots.boards, slots.viewers, slots.by_ip, slots.by_token, slots.by_tenant) == (0, 0, {}, {}, {})
