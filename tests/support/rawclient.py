"""A raw MQTT-over-WebSocket client: exact packets in, exact packets out (the project's codec)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from gateway.mqtt.decoder import PacketDecoder
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Packet


class RawClient:
    def __init__(self, port: int, ca: Path, level: int = 5, path: str = "/mqtt") -> None:
        self.url = f"wss://localhost:{port}{path}"
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.level = level
        self.decoder = PacketDecoder(max_packet_size=1 << 24, protocol_level=level)
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = False

    async def __aenter__(self) -> RawClient:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, ssl=self.ctx, protocols=("mqtt",))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, *packets: Packet) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(b"".join(encode(p, self.level) for p in packets))

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def recv(self, timeout: float = 5.0) -> Packet:
        """The next packet; raises ConnectionError when the gateway closed the connection."""
        assert self.ws is not None
        while True:
            raw = self.decoder.next_packet()
            if raw is not None:
                return raw.packet
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                self.closed = True
                raise ConnectionError(f"closed: {msg.type.name} {self.ws.close_code}")
            self.decoder.feed(msg.data)

    async def recv_none(self, timeout: float = 0.5) -> None:
        """Nothing arrives within ``timeout`` (and the connection stays open)."""
        try:
            p = await self.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {p!r}")
