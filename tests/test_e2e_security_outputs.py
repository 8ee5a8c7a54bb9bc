"""Issue 34 against a real server over real sockets: a receiver answering a
webhook with 400 MB (34.4), and one viewer token opening a thousand viewers
(34.7)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
import websockets

from lingting_testkit.servers import start_server, stop_server

pytestmark = pytest.mark.e2e
ALPHA = "alpha-" + "a" * 24        # tenant "alpha"
BETA = "beta-" + "b" * 24          # tenant "beta"
ADMIN = "admin-" + "z" * 24        # sees every tenant
SECRET = "hook-secret-" + "s" * 16
# The defaults of --max-viewers-per-ip, --max-viewers-per-token and --max-viewers-per-tenant.
PER_IP, PER_TOKEN, PER_TENANT = 64, 250, 500


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """whisper-tiny.en with three keys, webhooks to loopback allowed (the receivers here), and 127.0.0.1
    a trusted proxy: X-Forwarded-For names the address each viewer comes from."""
    keys = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "alpha"\nkey = "{ALPHA}"\n\n[[keys]]\nname = "beta"\nkey = "{BETA}"\n\n'
                    f'[[keys]]\nname = "root"\nkey = "{ADMIN}"\nadmin = true\n')
    running = start_server("--model", "whisper-tiny.en", "--api-keys-file", str(keys), "--model-workers", "1",
                           "--webhook-allow-private", "--trusted-proxy", "127.0.0.1")
    yield running
    stop_server(running)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def webhook_attempts(server) -> dict[str, float]:
    """lingting_webhook_attempts_total by outcome, from /metrics."""
    with urllib.request.urlopen(server.http + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return {line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("lingting_webhook_attempts_total{")}


class HugeAnswer:
    """A webhook receiver that answers 200 with a 400 MB body, sent as fast as the server reads it."""

    def __init__(self, body_bytes: int):
        self.body_bytes = body_bytes
        self.sent = 0
        self.requests = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * (1 << 20)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {self.body_bytes}\r\n\r\n".encode())
            left = self.body_bytes
            while left:
                writer.write(chunk[:left])
                await writer.drain()
                self.sent += min(left, len(chunk))
                left -= min(left, len(chunk))
        except (OSError, asyncio.IncompleteReadError):
            pass                # the server hung up
        finally:
            writer.close()


async def test_a_webhook_receiver_answering_400_mb_costs_the_server_no_memory(server):
    """34.4: the server read the whole answer (157 -> 1049 MB); now a 64 KiB prefix, and it hangs up."""
    huge = HugeAnswer(400 << 20)
    huge.server = await asyncio.start_server(huge._answer, "127.0.0.1", 0)
    pid = server.process.pid
    try:
        baseline = rss_mb(pid)
        async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {ALPHA}"}) as ws:
            hook = {"url": huge.url, "secret": SECRET, "events": ["session_end"]}
            await ws.send(json.dumps({"type": "start", "webhooks": [hook]}))
            await ws.recv()
            await ws.send(json.dumps({"type": "stop"}))
            async for _ in ws:
                pass
        peak, deadline = baseline, time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            attempts = await asyncio.to_thread(webhook_attempts, server)
            if sum(attempts.values()):
                break
            await asyncio.sleep(0.02)
        for _ in range(25):                # anything still being read shows by now
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.02)
    finally:
        huge.server.close()
    assert {k: v for k, v in attempts.items() if v} == {"delivered": 1.0}, attempts
    assert huge.requests == 1
    assert peak - baseline < 64, f"RSS {baseline:.0f} -> {peak:.0f} MB"
    assert huge.sent < 64 << 20             # the socket buffers' worth, then the server hung up


async def connect_all(url: str, headers: list[dict]) -> tuple[list, list[int]]:
    """Viewers opened at once (100 at a time): the open ones, and the HTTP status of each refused one."""
    opened, refused = [], []

    async def one(extra: dict):
        try:
            opened.append(await websockets.connect(url, additional_headers=extra, open_timeout=60))
        except websockets.InvalidStatus as exc:
            refused.append(exc.response.status_code)

    for i in range(0, len(headers), 100):
        await asyncio.gather(*(one(h) for h in headers[i:i + 100]))
    return opened, refused


async def first_event(url: str, headers: dict) -> dict:
    """The first event a viewer or board gets; or the refusal: {"status": ..., "body": ...}."""
    try:
        async with websockets.connect(url, additional_headers=headers) as ws:
            return json.loads(await ws.recv())
    except websockets.InvalidStatus as exc:
        return {"status": exc.response.status_code, "body": exc.response.body.decode()}


async def test_one_token_cannot_take_every_viewer_slot(server):
    """34.7: one token from one address opened 1000 viewers, and then beta's viewer, beta's board and the
    admin's board got 503. Now an address, a token and a tenant each get a share, and boards keep theirs."""
    ws_base = server.url.rsplit("/v1/", 1)[0]
    speakers, held = [], []
    try:
        tokens = []
        for name, owner in (("hall", ALPHA), ("annex", ALPHA), ("lobby", BETA)):
            speaker = await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {owner}"})
            speakers.append(speaker)
            await speaker.send(json.dumps({"type": "start", "room": name}))
            tokens.append(json.loads(await speaker.recv())["viewer_token"])
        hall = f"{ws_base}/v1/rooms/hall/events?token={tokens[0]}"
        annex = f"{ws_base}/v1/rooms/annex/events?token={tokens[1]}"

        # One address, one token, a thousand viewers: the address's share.
        opened, refused = await connect_all(hall, [{"X-Forwarded-For": "203.0.113.7"}] * 1000)
        held += opened
        assert len(opened) == PER_IP and set(refused) == {429}
        # The same token from a thousand addresses: the token's share.
        opened, refused = await connect_all(hall, [{"X-Forwarded-For": f"10.0.{n // 250}.{n % 250}"}
                                                   for n in range(1000)])
        held += opened
        assert len(held) == PER_TOKEN and set(refused) == {429}
        # The tenant's other room, from a thousand more addresses: the tenant's share.
        opened, refused = await connect_all(annex, [{"X-Forwarded-For": f"10.1.{n // 250}.{n % 250}"}
                                                    for n in range(1000)])
        held += opened
        assert len(held) == PER_TENANT and set(refused) == {429}
        spent = await first_event(f"{ws_base}/v1/rooms/hall/events",
                                  {"Authorization": f"Bearer {ALPHA}", "X-Forwarded-For": "192.0.2.1"})
        assert spent["status"] == 429 and "--max-viewers-per-tenant" in spent["body"], spent

        # Meanwhile another tenant's viewer and board, and the admin's board, get in.
        lobby = await first_event(f"{ws_base}/v1/rooms/lobby/events?token={tokens[2]}",
                                  {"X-Forwarded-For": "198.51.100.2"})
        assert lobby["type"] == "room" and lobby["room"] == "lobby", lobby
        for owner in (BETA, ADMIN):
            board = await first_event(f"{ws_base}/v1/rooms",
                                      {"Authorization": f"Bearer {owner}", "X-Forwarded-For": "198.51.100.3"})
            assert board["type"] == "rooms", board
    finally:
        await asyncio.gather(*(v.close() for v in held), return_exceptions=True)
        for speaker in speakers:
            await speaker.close()
