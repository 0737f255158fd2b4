"""The fleet sync and the control-topic guard as `mqttgate serve` wires them from config."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from gateway.fleet.envelope import write_key_pair
from gateway.fleet.publish import publish_policy
from tests.conftest import GatewayFactory
from tests.support.mosquitto import Mosquitto


def policy(topic: str) -> str:
    return json.dumps(
        {
            "version": "2.0",
            "default_action": "deny",
            "rules": [{"id": "r", "topic": topic, "action": "all", "effect": "allow"}],
        }
    )


@pytest.mark.parametrize("version", [4, 5])
def test_clients_never_reach_the_control_topic(
    gateway_factory: GatewayFactory, version: int
) -> None:
    permissive = json.dumps(
        {
            "version": "2.0",
            "default_action": "allow",
            "rules": [{"id": "all", "topic": "#", "action": "all", "effect": "allow"}],
        }
    )
    gw = gateway_factory(policy=permissive)
    c = gw.client(version=version)
    c.connect()
    refused = 0x87 if version == 5 else 0x80
    got = c.subscribe_many(
        [("$mqttgate/policy", 0), ("$mqttgate/#", 0), ("$share/g/$mqttgate/policy", 0)]
    )
    assert [int(getattr(r, "value", r)) for r in got] == [refused] * 3
    c.disconnect()


async def test_config_wired_fleet_applies_signed_update(
    gateway_factory: GatewayFactory, tmp_path: Path, broker: Mosquitto
) -> None:
    private, public = write_key_pair(tmp_path / "keys")
    topic = f"$mqttgate/policy-{uuid.uuid4().hex[:8]}"
    fleet_toml = (
        f'[fleet]\nenabled = true\ncontrol_topic = "{topic}"\n'
        f'public_key_files = ["{public}"]\npersist = false\n'
    )
    a = gateway_factory(policy=policy("old/#"), extra=fleet_toml)
    b = gateway_factory(policy=policy("old/#"), extra=fleet_toml)
    new = tmp_path / "new.json"
    new.write_text(policy("new/#"))
    version = await publish_policy(
        new, broker=f"mqtt://127.0.0.1:{broker.port}", signing_key=private, control_topic=topic
    )
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if all(g.gateway is not None and g.gateway.policy.version == version for g in (a, b)):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the signed update did not reach both gateways")
