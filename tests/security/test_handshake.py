"""TLS and WebSocket handshake attacks (issue 2, item 3): downgrades, other paths, Origin
look-alikes, subprotocols, text, fragmented and compressed frames. None of them gets an
MQTT session, so none can reach the broker."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
from pathlib import Path

import aiohttp
import pytest

from gateway.mqtt.decoder import decode_packet
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connack, Connect
from tests.security.conftest import ORIGIN, Witness, user
from tests.support.gateway_thread import GatewayThread


def tls(certs: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class RawWebSocket:
    """RFC 6455 by hand over TLS, for frames no WebSocket library will send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(
        cls, gw: GatewayThread, headers: dict[str, str] | None = None
    ) -> tuple[RawWebSocket, int, dict[str, str]]:
        reader, writer = await asyncio.open_connection("localhost", gw.port, ssl=tls(gw.certs))
        h = {
            "Host": f"localhost:{gw.port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Protocol": "mqtt",
            **(headers or {}),
        }
        request = "GET /mqtt HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        writer.write((request + "\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
        status = int(head.split(" ", 2)[1])
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)
        }
        return cls(reader, writer), status, fields

    def frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> None:
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", first, 0x80 | n)
        else:
            header = struct.pack("!BBH", first, 0x80 | 126, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(n)

    async def close_code(self) -> int:
        """Read until the server's close frame; its status code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    def close(self) -> None:
        self.writer.close()


async def test_tls12_downgrade_refused(gw: GatewayThread, witness: Witness) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection(
            "localhost", gw.port, ssl=tls(gw.certs, ssl.TLSVersion.TLSv1_2)
        )
    witness.no_upstream_connection()


async def test_plaintext_http_refused(gw: GatewayThread, witness: Witness) -> None:
    """No cleartext fallback on the TLS port: a plain upgrade request gets no HTTP answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    data = await asyncio.wait_for(reader.read(1024), 5)
    writer.close()
    assert not data.startswith(b"HTTP/")
    witness.no_upstream_connection()


@pytest.mark.parametrize("path", ["/", "/mqtt/", "/MQTT", "/mqtt/../admin", "/mqtt%2f", "/metrics"])
async def test_other_paths_refused(gw: GatewayThread, witness: Witness, path: str) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(
                f"wss://localhost:{gw.port}{path}", ssl=tls(gw.certs), protocols=("mqtt",)
            )
    assert info.value.status == 404
    witness.no_upstream_connection()


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com.evil.net",
        "https://evil-app.example.com",
        "https://evilapp.example.com",
        "http://app.example.com",
        "https://app.example.com:444",
        "https://APP.EXAMPLE.COM.evil.net",
        "https://app.example.co",
        "https://app.example.com@evil.net",
        "null",
        "",
    ],
)
async def test_origin_look_alikes_refused(gw: GatewayThread, witness: Witness, origin: str) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(
                f"wss://localhost:{gw.port}/mqtt",
                ssl=tls(gw.certs),
                protocols=("mqtt",),
                headers={"Origin": origin},
            )
    assert info.value.status == 403
    witness.no_upstream_connection()


async def test_allowed_origin_is_the_control(gw: GatewayThread) -> None:
    ws, status, fields = await RawWebSocket.open(gw, {"Origin": ORIGIN})
    ws.close()
    assert status == 101 and fields["sec-websocket-protocol"] == "mqtt"


@pytest.mark.parametrize(
    "protocols", [(), ("mqttv5",), ("MQTT",), ("chat",), ("mqtt-evil",), ("wamp", "stomp")]
)
async def test_subprotocol_required(
    gw: GatewayThread, witness: Witness, protocols: tuple[str, ...]
) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(
                f"wss://localhost:{gw.port}/mqtt", ssl=tls(gw.certs), protocols=protocols
            )
    assert info.value.status == 400
    witness.no_upstream_connection()


async def test_text_frame_closes_1003(gw: GatewayThread, witness: Witness) -> None:
    ws, status, _ = await RawWebSocket.open(gw)
    assert status == 101
    ws.frame(0x1, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")  # a CONNECT, as text
    assert await ws.close_code() == 1003
    ws.close()
    witness.no_upstream_connection()


async def test_fragmented_text_frame_closes_1003(gw: GatewayThread, witness: Witness) -> None:
    ws, _, _ = await RawWebSocket.open(gw)
    ws.frame(0x1, b"\x10\x0c", fin=False)
    ws.frame(0x0, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
    assert await ws.close_code() == 1003
    ws.close()
    witness.no_upstream_connection()


async def test_fragmented_binary_message_is_one_message(gw: GatewayThread) -> None:
    """RFC 6455 5.4: fragments are one message; the CONNECT it carries is read whole."""
    ws, _, _ = await RawWebSocket.open(gw)
    data = encode(Connect("c-frag", username="u", password=gw.idp.token(user()).encode()), 4)
    ws.frame(0x2, data[:3], fin=False)
    ws.frame(0x0, data[3:10], fin=False)
    ws.frame(0x0, data[10:])
    opcode, payload = await ws.read_frame()
    ws.close()
    assert opcode == 0x2 and decode_packet(payload, 4) == Connack(False, 0)


async def test_compression_offer_declined(gw: GatewayThread) -> None:
    ws, status, fields = await RawWebSocket.open(
        gw, {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    )
    ws.close()
    assert status == 101 and "sec-websocket-extensions" not in fields


async def test_compressed_frame_without_negotiation_closes(
    gw: GatewayThread, witness: Witness
) -> None:
    """RSV1 set without an extension that defines it: a protocol error (RFC 6455 5.2)."""
    ws, _, _ = await RawWebSocket.open(gw, {"Sec-WebSocket-Extensions": "permessage-deflate"})
    data = encode(Connect("c-rsv", username="u", password=gw.idp.token(user()).encode()), 4)
    ws.frame(0x2, data, rsv1=True)
    assert await ws.close_code() == 1002
    ws.close()
    witness.no_upstream_connection()
