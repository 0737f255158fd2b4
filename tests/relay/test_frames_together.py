"""WebSocket frames that arrive together are read as one MQTT byte stream (issue 7, item 2;
MQTT 5 spec 6.0: framing carries no meaning), in order, with control frames left to
aiohttp."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import aiohttp
import pytest

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
        seen: list[tuple[str, bytes, bool]] = []
        for _ in range(50):  # up to 10 s on a loaded machine
            seen += await asyncio.to_thread(spy.seen, 0.2)
            if len(seen) >= 80:
                break
        assert [(t, p) for t, p, _ in seen] == [
            (f"{prefix}/{i}", str(i).encode()) for i in range(80)
        ]
        ws.close()
    finally:
        spy.close()


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("qos", [0, 1])
async def test_known_packets_are_still_counted(gateway_factory: GatewayFactory, qos: int) -> None:
    """Packets that skip decoding (core/knownpackets.py) still count as allowed decisions
    and as packets in /metrics, exactly."""
    gw = gateway_factory()
    t = "known-" + uuid.uuid4().hex[:8]
    sub = gw.client(version=4)
    pub = gw.client(version=4)
    sub.connect()
    pub.connect()
    sub.subscribe(f"{t}/x", qos)
    for i in range(40):
        pub.publish(f"{t}/x", f"m{i}".encode(), qos)
    got = [sub.expect() for _ in range(40)]
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(40)]
    await asyncio.sleep(0.3)  # the shell adds its counts once per loop turn
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r,
    ):
        text = await r.text()
    assert _metric(text, "mqttgate_decisions_total", action="publish", verdict="allow") == 40
    assert _metric(text, "mqttgate_decisions_total", action="delivery", verdict="allow") == 40
    # CONNECT x2, SUBSCRIBE, 40 PUBLISH (+ 40 PUBACK at QoS 1) at least.
    up = _metric(text, "mqttgate_packets_total", direction="client_to_upstream")
    assert up >= 43 + (40 if qos else 0)
    sub.disconnect()
    pub.disconnect()


def test_frame_lengths_at_every_boundary(gateway_factory: GatewayFactory) -> None:
    """Deliveries written straight to the client's transport (connection.py
    _write_client_now) carry RFC 6455 5.2 lengths in all three forms."""
    gw = gateway_factory()
    t = "len-" + uuid.uuid4().hex[:8]
    sub = gw.client(version=5)
    pub = gw.client(version=5)
    sub.connect()
    pub.connect()
    sub.subscribe(f"{t}/x", 1)
    # Frame payload = MQTT packet: these sizes put it on both sides of 126 and 65,536.
    sizes = [0, 100, 110, 120, 130, 65_400, 65_530, 65_540, 70_000, 200_000]
    for n in sizes:
        pub.publish(f"{t}/x", bytes([n % 251]) * n, 1)
    got = [sub.expect() for _ in sizes]
    assert [len(m.payload) for m in got] == sizes
    assert all(m.payload == bytes([n % 251]) * n for m, n in zip(got, sizes, strict=True))
    sub.disconnect()
    pub.disconnect()
