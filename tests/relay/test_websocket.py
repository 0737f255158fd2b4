"""The WSS front door, byte by byte: TLS 1.3 only, path, subprotocol, Origin, frames."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from gateway.mqtt.decoder import decode_packet
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import (
    Connack,
    Connect,
    Pingreq,
    Pingresp,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto


def client_ssl(certs: Path, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def TOKEN(gw: GatewayThread) -> bytes:
    return gw.idp.token("raw-user").encode()


def url(gw: GatewayThread, path: str = "/mqtt") -> str:
    return f"wss://localhost:{gw.port}{path}"


async def ws_connect(
    gw: GatewayThread, certs: Path, *, protocols: tuple[str, ...] = ("mqtt",), **kw: object
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            kw.pop("target", None) or url(gw),  # type: ignore[arg-type]
            ssl=client_ssl(certs),
            protocols=protocols,
            **kw,  # type: ignore[arg-type]
        )
    except BaseException:
        await session.close()
        raise
    return session, ws


async def recv_packet(ws: aiohttp.ClientWebSocketResponse, level: int = 4) -> object:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.BINARY, msg
    return decode_packet(msg.data, level)


async def test_tls12_refused_tls13_accepted(gateway: GatewayThread, certs: Path) -> None:
    # The server's protocol_version alert surfaces as SSLError or as a reset.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection(
            "localhost", gateway.port, ssl=client_ssl(certs, ssl.TLSVersion.TLSv1_2)
        )
    _reader, writer = await asyncio.open_connection(
        "localhost", gateway.port, ssl=client_ssl(certs)
    )
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    writer.close()


async def test_connect_publish_subscribe_raw(gateway: GatewayThread, certs: Path) -> None:
    session, ws = await ws_connect(gateway, certs)
    async with session:
        assert ws.protocol == "mqtt"
        await ws.send_bytes(encode(Connect("raw-1", username="u", password=TOKEN(gateway)), 4))
        assert await recv_packet(ws) == Connack(False, 0)
        await ws.send_bytes(encode(Subscribe(1, (Subscription("raw/split/#", 0),)), 4))
        assert await recv_packet(ws) == Suback(1, (0,))
        # One packet split across three WebSocket messages, then two packets in one.
        pub = encode(Publish("raw/split/a", b"hello", 0), 4)
        for part in (pub[:1], pub[1:4], pub[4:]):
            await ws.send_bytes(part)
        got = await recv_packet(ws)
        assert isinstance(got, Publish) and got.payload == b"hello"
        await ws.send_bytes(encode(Pingreq(), 4) + encode(Publish("raw/split/b", b"2", 0), 4))
        seen: list[object] = []
        data = b""
        while len(seen) < 2:
            msg = await asyncio.wait_for(ws.receive(), 5)
            data += msg.data
            seen = []
            rest = data
            while rest:
                n = 2 + rest[1]
                seen.append(decode_packet(rest[:n], 4))
                rest = rest[n:]
        assert Pingresp() in seen
        assert any(isinstance(p, Publish) and p.payload == b"2" for p in seen)


async def test_mqttv31_subprotocol_accepted(gateway: GatewayThread, certs: Path) -> None:
    session, ws = await ws_connect(gateway, certs, protocols=("mqttv3.1",))
    async with session:
        assert ws.protocol == "mqttv3.1"


async def test_text_frame_closes_1003(gateway: GatewayThread, certs: Path) -> None:
    session, ws = await ws_connect(gateway, certs)
    async with session:
        await ws.send_str("CONNECT")
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1003


@pytest.mark.parametrize(
    ("path", "protocols", "headers", "status"),
    [
        ("/other", ("mqtt",), {}, 404),
        ("/mqtt/x", ("mqtt",), {}, 404),
        ("/mqtt", (), {}, 400),
        ("/mqtt", ("chat", "mqtt5"), {}, 400),
        ("/mqtt", ("mqtt",), {"Origin": "https://evil.example"}, 403),
        ("/mqtt", ("mqtt",), {"Origin": "https://app.example.com.evil.net"}, 403),
        ("/mqtt", ("mqtt",), {"Origin": "http://app.example.com"}, 403),
        ("/mqtt", ("mqtt",), {"Origin": "https://app.example.com:8443"}, 403),
        ("/mqtt", ("mqtt",), {"Origin": "null"}, 403),
    ],
)
async def test_upgrade_refused(
    gateway_factory: GatewayFactory,
    certs: Path,
    path: str,
    protocols: tuple[str, ...],
    headers: dict[str, str],
    status: int,
) -> None:
    gw = gateway_factory(listener_extra='allowed_origins = ["https://app.example.com"]')
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        s, _ = await ws_connect(
            gw, certs, protocols=protocols, headers=headers, target=url(gw, path)
        )
        await s.close()
    assert info.value.status == status


async def test_allowed_origin_accepted(gateway_factory: GatewayFactory, certs: Path) -> None:
    gw = gateway_factory(listener_extra='allowed_origins = ["https://app.example.com"]')
    session, ws = await ws_connect(gw, certs, headers={"Origin": "https://app.example.com"})
    async with session:
        await ws.send_bytes(encode(Connect("origin-ok", username="u", password=TOKEN(gw)), 4))
        assert await recv_packet(ws) == Connack(False, 0)


async def test_no_permessage_deflate(gateway: GatewayThread, certs: Path) -> None:
    session, ws = await ws_connect(gateway, certs, compress=15)
    async with session:
        assert ws.compress == 0


async def test_upstream_down_v311_bytes(
    gateway_factory: GatewayFactory, certs: Path, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "gone").start()
    gw = gateway_factory(upstream_port=broker.port)
    broker.stop()
    session, ws = await ws_connect(gw, certs)
    async with session:
        await ws.send_bytes(encode(Connect("down-1", username="u", password=TOKEN(gw)), 4))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.data == bytes([0x20, 0x02, 0x00, 0x03])
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_oversize_packet_refused_v5(gateway_factory: GatewayFactory, certs: Path) -> None:
    gw = gateway_factory(limits="max_packet_size = 2048")
    session, ws = await ws_connect(gw, certs)
    async with session:
        await ws.send_bytes(
            encode(Connect("big-1", protocol_level=5, username="u", password=TOKEN(gw)), 5)
        )
        connack = await recv_packet(ws, 5)
        assert isinstance(connack, Connack) and connack.reason_code == 0
        # Only the fixed header of a 4 KB packet: refused before its body arrives,
        # with DISCONNECT 0x95 Packet too large, then close.
        await ws.send_bytes(encode(Publish("big/t", b"x" * 4000, 0), 5)[:8])
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.BINARY
        assert decode_packet(msg.data, 5).reason_code == 0x95  # type: ignore[attr-defined]


async def test_connect_timeout_closes(gateway_factory: GatewayFactory, certs: Path) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 0.3")
    session, ws = await ws_connect(gw, certs)
    async with session:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_health_and_readiness(gateway: GatewayThread) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{gateway.admin_port}/healthz") as r:
            assert r.status == 200
        async with s.get(f"http://127.0.0.1:{gateway.admin_port}/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["checks"]["upstream"] == "ok"


async def test_readiness_reports_upstream_down(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "gone2").start()
    gw = gateway_factory(upstream_port=broker.port)
    broker.stop()
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/readyz") as r,
    ):
        assert r.status == 503
        assert (await r.json())["checks"]["upstream"] == "unreachable"


async def test_connections_per_address_limited(
    gateway_factory: GatewayFactory, certs: Path
) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 5.0\nmax_connections_per_address = 2")
    held = [await ws_connect(gw, certs) for _ in range(2)]
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            s, _ = await ws_connect(gw, certs)
            await s.close()
        assert info.value.status == 503
    finally:
        for session, ws in held:
            await ws.close()
            await session.close()
