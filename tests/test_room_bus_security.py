"""The room bus between edges (edge/room_bus.py) against a real PostgreSQL
and an intruder: a second database role with no grants, which may still
LISTEN and NOTIFY on any channel (issue 34.8). It must read nothing of the
rooms, and nothing it sends (forged or replayed) may reach a board."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lingting_server.edge.room_bus import (CHANNEL, MAX_PAYLOAD, VERSION, BusKey, Freshness, RoomBus, encode,
                                           open_sealed, seal)
from lingting_server.services.history.postgres import PostgresHistory
from lingting_server.services.rooms import Rooms, Viewer
from lingting_testkit.streams import final
from lingting_testkit.waiting import until

SECRET_FINAL = "the merger with globex closes on friday"


def texts(viewer: Viewer) -> list[str]:
    return [json.dumps(wire) for wire in viewer.queue]


def test_a_sealed_message_opens_only_with_its_key_and_unchanged():
    key, other = BusKey.from_secret(b"s" * 32), BusKey.from_secret(b"t" * 32)
    sealed = seal(key, SECRET_FINAL.encode())
    assert SECRET_FINAL not in sealed and open_sealed(key, sealed) == SECRET_FINAL.encode()
    assert seal(key, b"x") != seal(key, b"x")                     # a fresh nonce each time
    assert open_sealed(other, sealed) is None                     # another database's edges
    flipped = sealed[:10] + ("A" if sealed[10] != "A" else "B") + sealed[11:]
    assert open_sealed(key, flipped) is None                      # changed on the way
    for junk in ("", "{}", "2.", "2.!!!", "2." + "A" * 36, json.dumps({"op": "open"}), "1." + sealed[2:]):
        assert open_sealed(key, junk) is None


def test_the_seal_is_aes_256_gcm_keyed_by_hkdf_of_the_shared_secret():
    """The library's AEAD, not one of our own: a message opens with AESGCM
    itself, under the HKDF-SHA256 key of the secret, the version as associated data."""
    secret = b"s" * 32
    sealed = seal(BusKey.from_secret(secret), SECRET_FINAL.encode())
    assert sealed.startswith(VERSION)
    raw = base64.b64decode(sealed[len(VERSION):])
    assert len(raw) == 12 + len(SECRET_FINAL) + 16                 # nonce, ciphertext, tag
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"lingting room bus v2: aes-256-gcm").derive(secret)
    assert AESGCM(key).decrypt(raw[:12], raw[12:], VERSION.encode()) == SECRET_FINAL.encode()
    with pytest.raises(InvalidTag):
        AESGCM(key).decrypt(raw[:12], raw[12:], b"1.")


def test_the_largest_message_encode_allows_still_fits_a_notification_once_sealed():
    key = BusKey.from_secret(b"s" * 32)
    largest = 0
    for size in range(2500, 9000, 3):
        payload = encode({"op": "event", "session_id": "s", "edge": "e" * 12, "seq": 10**9, "t": time.time(),
                          "event": {"type": "final", "text": "é" * size}})
        if payload is not None:
            assert len(seal(key, payload.encode())) <= MAX_PAYLOAD
            largest = max(largest, len(payload.encode()))
    assert largest > 5880          # and the cap wastes little of it (docs/cluster.md says about 5890 bytes)


def test_a_replayed_or_stale_message_is_refused():
    fresh = Freshness(max_age_s=60)
    assert fresh.accept("a", 1, 1000.0, now=1000.0)
    assert not fresh.accept("a", 1, 1000.0, now=1001.0)           # the same again
    assert fresh.accept("a", 2, 1000.5, now=1001.0)
    assert not fresh.accept("a", 1, 1000.0, now=1001.0)           # an older one later
    assert fresh.accept("b", 1, 1000.0, now=1001.0)               # each edge counts its own
    assert not fresh.accept("c", 1, 900.0, now=1001.0)            # from before the window
    assert not fresh.accept("c", 1, 1100.0, now=1001.0)           # from too far ahead
    assert not fresh.accept("c", "1", 1000.0, now=1001.0) and not fresh.accept(None, 1, 1000.0, now=1001.0)


@pytest.fixture
def database(postgres):
    url = postgres.new_database()
    store = PostgresHistory(url)              # the edges' schema (lingting_secrets among it)
    yield url
    store.close()


@pytest.mark.timeout(120)
async def test_a_role_without_grants_reads_nothing_and_injects_nothing(database, caplog):
    import psycopg
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as admin:
        await admin.execute("CREATE ROLE intruder LOGIN")
    intruder_url = database.replace("postgresql://lingting@", "postgresql://intruder@")
    connect = functools.partial(psycopg.AsyncConnection.connect, intruder_url, autocommit=True)
    # Two connections: one listens (notifies() holds its connection), one sends.
    async with await connect() as ears, await connect() as intruder:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await intruder.execute("SELECT value FROM lingting_secrets")
        await ears.execute(f"LISTEN {CHANNEL}")
        key = b"k" * 32
        alpha, beta = Rooms(token_key=key), Rooms(token_key=key)
        alpha_bus, beta_bus = RoomBus(database, alpha), RoomBus(database, beta)
        await alpha_bus.start()
        await beta_bus.start()
        try:
            board = beta.watch_all("acme")
            room = alpha.open("s1", "acme", "town-hall", {"mode": "stream"})
            alpha.publish(room, final(0, SECRET_FINAL))
            await until(lambda: any(SECRET_FINAL in t for t in texts(board)))

            heard: list[str] = []
            async def listen():
                async for note in ears.notifies():
                    heard.append(note.payload)
            listening = asyncio.get_running_loop().create_task(listen())
            alpha.publish(room, final(1, SECRET_FINAL + " again"))
            await until(lambda: any("again" in t for t in texts(board)))
            await until(lambda: len(heard) >= 1)
            for payload in heard:         # ciphertext: no room, tenant or word of it
                assert "town-hall" not in payload and "acme" not in payload and "merger" not in payload
                with pytest.raises(ValueError):
                    json.loads(payload)

            # Forged messages, and alpha's own replayed, go to every edge's bus.
            caplog.set_level(logging.WARNING, "lingting.rooms")
            forged = [{"op": "open", "session_id": "fake", "owner": "acme", "name": "payroll", "details": {},
                       "edge": "evil"},
                      {"op": "event", "session_id": "fake", "edge": "evil",
                       "event": {"type": "final", "text": "INJECTED: wire the funds to account 42"}},
                      {"op": "event", "session_id": "s1", "edge": alpha_bus.edge, "seq": 10**9, "t": time.time(),
                       "event": {"type": "final", "text": "INJECTED into a real room"}}]
            for message in [*forged, *heard]:
                payload = message if isinstance(message, str) else json.dumps(message)
                await intruder.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            listening.cancel()
            alpha.publish(room, final(2, "after the intruder"))      # what follows still arrives, once
            await until(lambda: any("after the intruder" in t for t in texts(board)))
            await asyncio.sleep(0.2)
            everything = "\n".join(texts(board))
            assert "INJECTED" not in everything and "payroll" not in everything
            assert beta.find("acme", "payroll") is None and beta.find(None, "fake") is None
            assert sum("again" in t for t in texts(board)) == 1     # the replay did not repeat a final
            assert any("refused" in r.getMessage() for r in caplog.records)
        finally:
            await alpha_bus.close()
            await beta_bus.close()
