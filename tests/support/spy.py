"""A paho client connected straight to the broker (TCP), subscribed to ``#``: what got through."""

from __future__ import annotations

import queue
import time
from typing import Any

import paho.mqtt.client as mqtt


class BrokerSpy:
    def __init__(self, broker_port: int, topic: str = "#") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        subscribed: queue.Queue[bool] = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, bool(m.retain)))
        self.c.on_subscribe = lambda *a: subscribed.put(True)
        self.c.connect("127.0.0.1", broker_port)
        self.c.loop_start()
        self.c.subscribe(topic, 2)
        subscribed.get(timeout=5)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish(5)

    def seen(self, settle: float = 0.3) -> list[tuple[str, bytes, bool]]:
        time.sleep(settle)
        out: list[tuple[str, bytes, bool]] = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def topics(self, settle: float = 0.3) -> list[str]:
        return [t for t, _, _ in self.seen(settle)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def __enter__(self) -> BrokerSpy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
