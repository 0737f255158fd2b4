"""A fresh Mosquitto per test (retained messages are broker-wide state) and helpers."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.protection.broker import BrokerParams
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto").start()
    yield m
    m.stop()


@pytest.fixture
def service(own_broker: Mosquitto) -> BrokerParams:
    return BrokerParams("127.0.0.1", own_broker.port)


def retained(port: int, topic_filter: str = "#", settle: float = 0.3) -> dict[str, bytes]:
    """The retained messages a fresh subscriber receives now (topic -> payload)."""
    got: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)  # type: ignore[attr-defined]
    c.on_message = lambda cl, u, m: got.put((m.topic, bytes(m.payload), bool(m.retain)))
    c.on_subscribe = lambda *a: subscribed.put(True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe(topic_filter, 1)
        subscribed.get(timeout=5)
        time.sleep(settle)
    finally:
        c.disconnect()
        c.loop_stop()
    out: dict[str, bytes] = {}
    while not got.empty():
        topic, payload, flag = got.get_nowait()
        if flag:
            out[topic] = payload
    return out
