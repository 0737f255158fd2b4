"""The retention sweeper against a real Mosquitto: clears on schedule, survives restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.protection.broker import BrokerParams
from gateway.protection.sweeper import RetentionSweeper
from tests.protection.conftest import retained
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    with BrokerSpy(port, "$none/never") as spy:
        spy.publish(topic, payload, qos=1, retain=True)


async def wait_until_gone(port: int, topic: str, timeout: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout:
        if topic not in await asyncio.to_thread(retained, port, topic, 0.1):
            return loop.time() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{topic} is still retained after {timeout}s")


async def test_clears_the_retained_message_after_its_ttl(
    own_broker: Mosquitto, service: BrokerParams, tmp_path: Path
) -> None:
    port = own_broker.port
    publish_retained(port, "sensors/1", b"21.5")
    publish_retained(port, "sensors/2", b"keep me")
    cleared: list[tuple[str, str | None]] = []
    sweeper = RetentionSweeper(
        tmp_path / "r.sqlite",
        service,
        interval_s=0.1,
        on_cleared=lambda t, o: cleared.append((t, o)),
    )
    await sweeper.start()
    try:
        sweeper.record("sensors/1", "acme", 1)
        await asyncio.sleep(0.5)
        assert (await asyncio.to_thread(retained, port))["sensors/1"] == b"21.5"  # not yet
        waited = await wait_until_gone(port, "sensors/1")
        assert waited < 2.0
        assert cleared == [("sensors/1", "acme")]
        assert (await asyncio.to_thread(retained, port)) == {"sensors/2": b"keep me"}
        assert await sweeper.pending() == []
    finally:
        await sweeper.stop()


async def test_pending_clear_survives_a_restart(
    own_broker: Mosquitto, service: BrokerParams, tmp_path: Path
) -> None:
    port = own_broker.port
    db = tmp_path / "r.sqlite"
    publish_retained(port, "records/9", b"secret")
    first = RetentionSweeper(db, service, interval_s=0.1)
    await first.start()
    first.record("records/9", None, 1)
    await first.stop()  # the gateway stops before the TTL passes

    await asyncio.sleep(1.2)
    assert (await asyncio.to_thread(retained, port))["records/9"] == b"secret"

    second = RetentionSweeper(db, service, interval_s=0.1)
    await second.start()
    try:
        await wait_until_gone(port, "records/9", timeout=2.0)
        assert await second.pending() == []
    finally:
        await second.stop()


async def test_a_newer_publish_reschedules_and_an_empty_one_forgets(
    own_broker: Mosquitto, service: BrokerParams, tmp_path: Path
) -> None:
    sweeper = RetentionSweeper(tmp_path / "r.sqlite", service, interval_s=0.1)
    await sweeper.start()
    try:
        sweeper.record("a/1", None, 1)
        sweeper.record("a/1", None, 3600)  # a new retained message on the same topic
        sweeper.record("a/2", None, 1)
        sweeper.forget("a/2")  # cleared by a client in the meantime
        pending = await sweeper.pending()
        assert [d.topic for d in pending] == ["a/1"]
        assert pending[0].expires_at > time.time() + 3000  # the later TTL won
        publish_retained(own_broker.port, "a/1", b"v2")
        await asyncio.sleep(1.3)
        assert (await asyncio.to_thread(retained, own_broker.port))["a/1"] == b"v2"
    finally:
        await sweeper.stop()


async def test_broker_outage_keeps_the_row_until_a_clear_succeeds(tmp_path: Path) -> None:
    down = Mosquitto(tmp_path / "m")  # not started yet: its port refuses connections
    service = BrokerParams("127.0.0.1", down.port, timeout_s=2.0)
    sweeper = RetentionSweeper(tmp_path / "r.sqlite", service, interval_s=3600)
    await sweeper.start()
    try:
        sweeper.record("t/1", None, 0)
        with pytest.raises(aiomqtt.MqttError):
            await sweeper.sweep_once()
        assert [d.topic for d in await sweeper.pending()] == ["t/1"]
        down.start()
        try:
            publish_retained(down.port, "t/1", b"x")
            assert await sweeper.sweep_once() == ["t/1"]
            assert await asyncio.to_thread(retained, down.port) == {}
        finally:
            down.stop()
    finally:
        await sweeper.stop()
