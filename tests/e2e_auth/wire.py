"""Helpers for the end-to-end authentication tests: raw MQTT-over-WebSocket clients that can
set upgrade headers and query parameters, a relay that keeps each broker connection's bytes
apart, a JWKS server in its own thread, and ``[auth]`` tables."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from gateway.auth.devidp import DEV_AUDIENCE, DEV_ISSUER, SigningKey, mint_token, public_jwk
from gateway.mqtt.decoder import PacketDecoder
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Packet
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp
from tests.support.recorder import RecordingRelay

WAIT = 4.0


def ssl_context(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


def ws_url(gw: GatewayThread, query: Mapping[str, str] | None = None, path: str = "/mqtt") -> str:
    q = f"?{urlencode(dict(query))}" if query else ""
    return f"wss://localhost:{gw.port}{path}{q}"


class Wire:
    """One raw MQTT client over wss: exact packets in and out, any upgrade headers/query."""

    def __init__(
        self,
        gw: GatewayThread,
        *,
        level: int = 5,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self.url = ws_url(gw, query)
        self.ctx = ssl_context(gw.certs)
        self.level = level
        self.headers = dict(headers or {})
        self.decoder = PacketDecoder(max_packet_size=1 << 24, protocol_level=level)
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Wire:
        self.session = aiohttp.ClientSession()
        try:
            self.ws = await self.session.ws_connect(
                self.url, ssl=self.ctx, protocols=("mqtt",), headers=self.headers
            )
        except BaseException:
            await self.session.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, *packets: Packet) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(b"".join(encode(p, self.level) for p in packets))

    async def recv(self, timeout: float = WAIT) -> Packet:
        """The next packet; ConnectionError when the gateway closed the WebSocket."""
        assert self.ws is not None
        while True:
            raw = self.decoder.next_packet()
            if raw is not None:
                return raw.packet
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"closed: {msg.type.name} {self.ws.close_code}")
            self.decoder.feed(msg.data)

    async def recv_bytes(self, timeout: float = WAIT) -> bytes:
        """The next WebSocket message as it came, undecoded (for codes our decoder refuses)."""
        assert self.ws is not None and self.decoder.buffered == 0
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"closed: {msg.type.name} {self.ws.close_code}")
        data: bytes = msg.data
        return data

    async def expect_closed(self, timeout: float = WAIT) -> None:
        """The gateway closes the connection and sends nothing more before that."""
        try:
            p = await self.recv(timeout)
        except ConnectionError:
            return
        raise AssertionError(f"expected the connection to close, got {p!r}")

    async def connect(self, packet: Packet) -> Packet:
        await self.send(packet)
        return await self.recv()


async def upgrade(
    gw: GatewayThread,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """A WebSocket upgrade request made by hand: the HTTP status and body the gateway answers."""
    h = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "mqtt",
        **dict(headers or {}),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(ws_url(gw, query), headers=h, ssl=ssl_context(gw.certs)) as resp,
    ):
        body = "" if resp.status == 101 else await resp.text()
        return resp.status, body


class SplitRelay(RecordingRelay):
    """A RecordingRelay that also keeps what the broker received on each connection apart."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.connections: list[bytearray] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = bytearray()
        with self._lock:
            self.connections.append(conn)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, sinks: tuple[bytearray, ...]
        ) -> None:
            try:
                while data := await r.read(65536):
                    with self._lock:
                        for sink in sinks:
                            sink.extend(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(
            pipe(reader, up_w, (conn, self.to_broker)), pipe(up_r, writer, (self.from_broker,))
        )

    def settled_connections(self, at_least: int = 0, timeout: float = 2.0) -> int:
        """How many connections the relay accepted, once at least ``at_least`` have been
        seen and none arrived for a moment (accepts are recorded in the relay's thread)."""
        deadline = time.monotonic() + timeout
        while len(self.connections) < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        return len(self.connections)

    def packets(self) -> list[list[Packet]]:
        """The packets the broker received, one list per connection."""
        out: list[list[Packet]] = []
        with self._lock:
            captures = [bytes(c) for c in self.connections]
        for data in captures:
            decoder = PacketDecoder(max_packet_size=1 << 24, expect_connect=True)
            decoder.feed(data)
            packets: list[Packet] = []
            while (raw := decoder.next_packet()) is not None:
                packets.append(raw.packet)
            out.append(packets)
        return out


class JwksServer:
    """An identity provider's JWKS endpoint on 127.0.0.1, in its own thread and loop, so
    that a gateway starting in another thread can fetch from it while the test blocks."""

    AUDIENCE = "mqttgate-e2e"

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.cache_control = "max-age=3600"
        self.down = False
        self.hits = 0
        self.base = ""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def url(self) -> str:
        return self.base + "/jwks.json"

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response(self.jwks, headers={"Cache-Control": self.cache_control})

    def start(self) -> JwksServer:
        self._thread.start()

        async def boot() -> int:
            app = web.Application()
            app.router.add_get("/jwks.json", self._jwks)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server) and server.sockets
            port: int = server.sockets[0].getsockname()[1]
            return port

        port = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(5)
        self.base = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def publish(self, *keys: tuple[SigningKey, str]) -> None:
        """Serve exactly these (key, kid) pairs from now on."""
        self.jwks = {"keys": [public_jwk(k, kid) for k, kid in keys]}

    def token(
        self, key: SigningKey, kid: str, sub: str = "u1", ttl_s: float = 3600, **claims: Any
    ) -> str:
        return mint_token(
            key,
            issuer=self.issuer,
            audience=self.AUDIENCE,
            subject=sub,
            ttl_s=ttl_s,
            claims=claims,
            kid=kid,
        )

    def issuer_toml(self) -> str:
        return f"""
[[auth.issuers]]
issuer = "{self.issuer}"
audiences = ["{self.AUDIENCE}"]
jwks_url = "{self.url}"
"""


def dev_issuer_toml(idp: DevIdp) -> str:
    return f"""
[[auth.issuers]]
issuer = "{DEV_ISSUER}"
audiences = ["{DEV_AUDIENCE}"]
jwks_file = "{idp.jwks_file}"
"""


def auth_toml(
    issuers: str,
    *,
    token_sources: tuple[str, ...] | None = None,
    burst: int = 1000,
    refill_per_s: float = 100.0,
    leeway_s: float | None = None,
    tables: str = "",
) -> str:
    """An ``[auth]`` table. The failure limit is lax unless a test sets it: every test
    connects from 127.0.0.1, and a strict bucket would make unrelated refusals interfere."""
    sources = ""
    if token_sources is not None:
        sources = "token_sources = [" + ", ".join(f'"{s}"' for s in token_sources) + "]"
    if leeway_s is not None:
        sources += f"\nleeway_s = {leeway_s}"
    return f"""
[auth]
{sources}

[auth.rate_limit]
burst = {burst}
refill_per_s = {refill_per_s}
{tables}
{issuers}
"""


def random_kid() -> str:
    return secrets.token_urlsafe(9)


def signature_of(token: str) -> str:
    return token.rsplit(".", 1)[1]


def payload_of(token: str) -> str:
    return token.split(".")[1]
