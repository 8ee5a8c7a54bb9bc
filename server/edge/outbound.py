"""Requests this server makes to URLs its clients gave (webhooks, caption
outputs). Such a URL could point at the server's own network (a metadata
service, an admin port on localhost): unless the operator allows private
targets, every address the name resolves to must be public, and the request
goes to the address that was checked, so a second DNS answer cannot swap in
a private one."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..wire.errors import ErrorCode, ProtocolError

TIMEOUT_S = 10.0             # connect, and each read or write
EXCHANGE_S = 30.0            # a whole request and its answer: a receiver trickling its answer is cut off
MAX_ANSWER_BYTES = 64 << 10  # of an answer's body, read for an error message or Zoom's seq; the rest is never read
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class TargetRefused(Exception):
    """The URL resolves to an address this server may not send to."""


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: its status and the first MAX_ANSWER_BYTES of its body."""
    status_code: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Resolved:
    scheme: str
    host: str            # as the URL names it (for Host and TLS)
    port: int
    address: str         # the checked address to connect to


# IPv6 forms that carry an IPv4 address in their last 32 bits; traffic to them reaches that IPv4 host
# (through the dual stack, or a NAT64 gateway), so they are judged by it.
LOW32_IPV4 = tuple(ipaddress.ip_network(n) for n in (
    "::/96",                # IPv4-compatible ::a.b.c.d (deprecated; also :: and ::1)
    "::ffff:0:0/96",        # IPv4-mapped ::ffff:a.b.c.d
    "::ffff:0:0:0/96",      # IPv4-translated ::ffff:0:a.b.c.d (SIIT)
    "64:ff9b::/96"))        # NAT64, the well-known prefix
# NAT64's local-use prefix: where the IPv4 address sits depends on the site's prefix length, so it is refused.
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def carried_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address leads to (6to4 and Teredo through a
    relay: Teredo's server and client both); None when it carries none."""
    if any(ip in net for net in LOW32_IPV4):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    return None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6:
        if ip in NAT64_LOCAL:
            return False
        carried = carried_ipv4(ip)
        if carried is not None:
            return all(is_public(str(v4)) for v4 in carried)
    return ip.is_global and not ip.is_multicast


def literal_refusal(url: str, allow_private: bool) -> ProtocolError | None:
    """At start, without DNS: a URL naming a private address or localhost is refused at once."""
    if allow_private:
        return None
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    try:
        private = not is_public(host)
    except ValueError:
        private = host == "localhost" or host.endswith(".localhost")
    if private:
        return ProtocolError(ErrorCode.OUTPUT_REFUSED, f"{host} is a private or loopback address: this server "
                                                       "sends only to public addresses (operators may allow private "
                                                       "ones with --webhook-allow-private)")
    return None


async def resolve(url: str, allow_private: bool) -> Resolved:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise TargetRefused(f"{host} resolves to {private[0]}, a private or loopback address: this server sends "
                                "only to public addresses (operators may allow private ones with "
                                "--webhook-allow-private)")
    return Resolved(parts.scheme, host, port, addresses[0])


def client() -> httpx.AsyncClient:
    # No redirects (a redirect could lead to a private address) and no proxy from the environment.
    return httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False)


async def request(http: httpx.AsyncClient, method: str, url: str, allow_private: bool, **kwargs) -> Answer:
    """method url, sent to the checked address (Host and TLS name as the URL says).
    A receiver chooses how much it answers and how fast: only a bounded prefix
    of its body is read, raw (no decompression to inflate it), within EXCHANGE_S."""
    try:
        async with asyncio.timeout(EXCHANGE_S):
            target = await resolve(url, allow_private)
            parts = urlsplit(url)
            address = f"[{target.address}]" if ":" in target.address else target.address
            pinned = urlunsplit((parts.scheme, f"{address}:{target.port}", parts.path or "/", parts.query, ""))
            headers = {**kwargs.pop("headers", {}), "Host": parts.netloc, "Accept-Encoding": "identity"}
            extensions = {"sni_hostname": target.host} if parts.scheme == "https" else {}
            async with http.stream(method, pinned, headers=headers, extensions=extensions, **kwargs) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk[:MAX_ANSWER_BYTES - len(body)]
                    if len(body) >= MAX_ANSWER_BYTES:
                        break           # leaving the block closes the connection with the rest unread
                return Answer(response.status_code, bytes(body))
    except TimeoutError:
        raise httpx.TimeoutException(f"no answer within {EXCHANGE_S:g} s (the status and at most "
                                     f"{MAX_ANSWER_BYTES >> 10} KiB of the body are read)") from None
