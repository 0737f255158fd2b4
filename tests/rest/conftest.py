"""The REST bridge against a real gateway (in a thread) and a real Mosquitto."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiohttp import web

from gateway.rest import RestBridge, RestConfig
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {
            "id": "own",
            "topic": "rest/{user_id}/#",
            "action": "publish",
            "effect": "allow",
            "qos": [0, 1, 2],
            "retain": True,
        },
        {"id": "everyone-reads", "topic": "#", "action": "subscribe", "effect": "allow"},
    ],
}


@dataclass
class Bridge:
    gt: GatewayThread
    bridge: RestBridge
    port: int
    audit_log: Path
    runner: web.AppRunner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit(self) -> list[dict[str, Any]]:
        assert self.gt.gateway is not None
        self.gt.gateway.audit_pipeline.flush()
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


BridgeFactory = Callable[..., Bridge]


@pytest.fixture
def bridge_factory(gateway_factory: GatewayFactory, tmp_path: Path) -> Iterator[BridgeFactory]:
    made: list[Bridge] = []

    def make(upstream_port: int | None = None, **rest: Any) -> Bridge:
        audit_log = tmp_path / f"audit{len(made)}.jsonl"
        gt = gateway_factory(
            policy=json.dumps(POLICY),
            upstream_port=upstream_port,
            extra=f'[audit]\nlog_file = "{audit_log}"\n',
        )
        assert gt.gateway is not None
        gateway = gt.gateway
        config = RestConfig(enabled=True, instance=f"test{len(made)}", **rest)

        async def boot() -> tuple[RestBridge, web.AppRunner, int]:
            bridge = RestBridge(gateway, config)
            app = web.Application()
            bridge.add_routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            await bridge.start()
            server: Any = site._server
            return bridge, runner, int(server.sockets[0].getsockname()[1])

        bridge, runner, port = gt.call(boot())
        b = Bridge(gt, bridge, port, audit_log, runner)
        made.append(b)
        return b

    yield make
    for b in made:

        async def down(b: Bridge = b) -> None:
            await b.bridge.stop()
            await b.runner.cleanup()

        b.gt.call(down())


class V5Subscriber:
    """A paho MQTT v5 client on the broker itself: sees user properties as they arrive."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        done: queue.Queue[bool] = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda *a: done.put(True)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe(topic, 2)
        done.get(timeout=5)

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def none(self, timeout: float = 0.4) -> bool:
        try:
            self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
