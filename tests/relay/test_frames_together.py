"""WebSocket frames that arrive together are read as one MQTT byte stream (issue 7, item 2;
MQTT 5 spec 6.0: framing carries no meaning), in order, with control frames left to
aiohttp."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connect, Publish
from tests.conftest import GatewayFactory
from tests.security.test_handshake import RawWebSocket
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy


async def test_a_burst_of_frames_reaches_the_broker_whole_and_in_order(
    gateway_factory: GatewayFactory, broker: Mosquitto
) -> None:
    gw = gateway_factory()
    prefix = "burst-" + uuid.uuid4().hex[:8]
    spy = BrokerSpy(broker.port, f"{prefix}/#")
    try:
        ws, status, _ = await RawWebSocket.open(gw)
        assert status == 101
        token = gw.idp.token("u").encode()
        connect = Connect("c-" + prefix, protocol_level=4, username="jwt", password=token)
        ws.frame(0x2, encode(connect, 4))
        assert await ws.read_frame() == (0x2, b"\x20\x02\x00\x00")
        # The installed aiohttp exposes its message queue: frames parsed from one read
        # are taken together (connection.py _take_binary), not one wake-up each.
        assert gw.gateway is not None
        (conn,) = [c for c in gw.gateway.connections if c.session.client_id == "c-" + prefix]
        assert conn._ws_queue is not None
        stream = b"".join(
            encode(Publish(f"{prefix}/{i}", str(i).encode(), 0), 4) for i in range(80)
        )
        # Irregular cuts: packets split over frames, several packets per frame, a ping
        # in the middle; all written at once, so they are parsed from the same reads.
        cuts = [0, 3, 50, 51, 400, 777, 1200, len(stream)]
        for n, (a, b) in enumerate(itertools.pairwise(cuts)):
            ws.frame(0x2, stream[a:b])
            if n == 3:
                ws.frame(0x9, b"still there?")
        assert await ws.read_frame() == (0xA, b"still there?")  # aiohttp answered the ping
        await asyncio.sleep(0)
        seen = await asyncio.to_thread(spy.seen, 1.0)
        assert [(t, p) for t, p, _ in seen] == [
            (f"{prefix}/{i}", str(i).encode()) for i in range(80)
        ]
        ws.close()
    finally:
        spy.close()
