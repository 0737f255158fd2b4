"""Resource limits end to end (issue 9, item 3): each one configured, hit, and answered."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.rawclient import RawClient


async def connected(gw: GatewayThread, level: int = 5, keep_alive: int = 60) -> RawClient:
    c = RawClient(gw.port, gw.certs / "ca.pem", level)
    await c.__aenter__()
    u = "u" + uuid.uuid4().hex[:8]
    await c.send(
        Connect(
            u,
            protocol_level=level,
            keep_alive=keep_alive,
            username="x",
            password=gw.idp.token(u).encode(),
        )
    )
    connack = await c.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    c.connack = connack  # type: ignore[attr-defined]
    return c


async def test_keep_alive_enforced(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 5.0\nmax_keep_alive_s = 1")
    c = await connected(gw, keep_alive=0)
    try:
        assert c.connack.properties.get(PropertyId.SERVER_KEEP_ALIVE) == 1  # type: ignore[attr-defined]
        # Silent for 1.5 x 1 s: DISCONNECT 0x8D Keep alive timeout.
        assert await c.recv(timeout=4) == Disconnect(0x8D)
    finally:
        await c.__aexit__()


async def test_message_rate(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 5.0\nmax_messages_per_s = 20")
    c = await connected(gw)
    try:
        await c.send(*[Publish("rate/x", b"", 0) for _ in range(100)])
        got = await c.recv()
        assert got == Disconnect(0x96)
    finally:
        await c.__aexit__()


async def test_receive_maximum(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 5.0\nreceive_maximum = 5")
    c = await connected(gw)
    try:
        assert c.connack.properties.get(PropertyId.RECEIVE_MAXIMUM) == 5  # type: ignore[attr-defined]
        # 6 unacknowledged QoS 1 publishes in one frame: the 6th exceeds the window.
        await c.send(*[Publish("rm/x", b"", 1, packet_id=i) for i in range(1, 7)])
        seen = [await c.recv() for _ in range(1)]
        while not isinstance(seen[-1], Disconnect):
            seen.append(await c.recv())
        assert seen[-1] == Disconnect(0x93)
    finally:
        await c.__aexit__()


@pytest.mark.parametrize("level", [4, 5])
async def test_topic_limits_and_subscription_quota(
    gateway_factory: GatewayFactory, level: int
) -> None:
    gw = gateway_factory(
        limits="connect_timeout_s = 5.0\nmax_topic_levels = 4\nmax_subscriptions = 2"
    )
    c = await connected(gw, level)
    try:
        await c.send(Publish("a/b/c/d/e", b"", 1, packet_id=1))
        assert await c.recv() == Puback(1, 0x90 if level == 5 else 0)
        subs = (
            Subscription("q/1", 0),
            Subscription("q/2", 0),
            Subscription("q/3", 0),
            Subscription("a/b/c/d/#", 0),
        )
        await c.send(Subscribe(2, subs))
        quota, invalid = (0x97, 0x8F) if level == 5 else (0x80, 0x80)
        assert await c.recv() == Suback(2, (0, 0, quota, invalid))
    finally:
        await c.__aexit__()


async def test_connect_timeout_slowloris(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(limits="connect_timeout_s = 0.5")
    async with RawClient(gw.port, gw.certs / "ca.pem", 5) as c:
        await c.send_raw(b"\x10")  # the first byte of a CONNECT, then nothing
        with pytest.raises(ConnectionError):
            await c.recv(timeout=3)
    await asyncio.sleep(0)
