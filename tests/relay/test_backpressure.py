"""A slow client must not make the gateway buffer without bound (issue 2, item 6)."""

from __future__ import annotations

import asyncio
import time
import uuid

from gateway.mqtt.packets import Connack, Connect, Suback, Subscribe, Subscription
from tests.conftest import GatewayFactory
from tests.support.mosquitto import Mosquitto
from tests.support.rawclient import RawClient
from tests.support.spy import BrokerSpy

HIGH = 64 * 1024
PAYLOAD = b"x" * 32 * 1024
FLOOD = 1500  # 48 MiB in all: far more than any bound below


async def test_slow_subscriber_bounded(gateway_factory: GatewayFactory, broker: Mosquitto) -> None:
    gw = gateway_factory(limits=f"connect_timeout_s = 5.0\nwrite_buffer_high = {HIGH}")
    topic = f"bp/{uuid.uuid4().hex[:8]}"
    async with RawClient(gw.port, gw.certs / "ca.pem", 4) as c:
        await c.send(Connect("slow", username="u", password=gw.idp.token("slow").encode()))
        assert isinstance(await c.recv(), Connack)
        await c.send(Subscribe(1, (Subscription(topic, 0),)))
        assert isinstance(await c.recv(), Suback)
        # The client stops reading. A publisher straight on the broker floods it.
        with BrokerSpy(broker.port, "$none") as direct:
            for _ in range(FLOOD):
                direct.c.publish(topic, PAYLOAD, 0)
            deadline = time.monotonic() + 3
            peak: dict[str, int] = {}
            assert gw.gateway is not None
            while time.monotonic() < deadline:
                conns = list(gw.gateway.connections)
                assert len(conns) == 1
                for k, v in conns[0].buffered().items():
                    peak[k] = max(peak.get(k, 0), v)
                await asyncio.sleep(0.05)
        # What the gateway holds for this client stays within its bounds, not 48 MiB:
        # towards the client, aiohttp's writer drains past its limit (a few hundred KiB
        # with TLS records in flight); from the broker, the stream reader pauses at twice
        # its 64 KiB limit, plus one socket read (asyncio reads up to 256 KiB).
        assert peak["to_client"] < HIGH + 1024 * 1024, peak
        assert peak["from_upstream"] <= 2 * 64 * 1024 + 256 * 1024, peak
        # And the client, reading again, gets messages that were held back.
        got = 0
        while got < 20:
            await c.recv(5)
            got += 1
