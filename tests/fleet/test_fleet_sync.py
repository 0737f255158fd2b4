"""Two gateways, one Mosquitto: a signed policy update reaches both; tampered, unsigned,
stale and foreign-key envelopes are refused by both and audited."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.fleet.config import FleetConfig
from gateway.fleet.envelope import load_private_key, sign_policy, write_key_pair
from gateway.fleet.publish import add_fleet_commands, publish_policy
from gateway.fleet.sync import FleetPolicySync
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy


def policy(rule_topic: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "default_action": "deny",
        "rules": [{"id": "r", "topic": rule_topic, "action": "all", "effect": "allow"}],
    }


OLD = policy("news/#")
NEW = policy("other/#")


@dataclass
class Instance:
    gt: GatewayThread
    sync: FleetPolicySync
    audit_log: Path

    @property
    def version(self) -> str:
        assert self.gt.gateway is not None
        return self.gt.gateway.policy.version

    def audit(self) -> list[dict[str, Any]]:
        assert self.gt.gateway is not None
        self.gt.gateway.audit_pipeline.flush()
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("action") == "policy_update"]


@dataclass
class Fleet:
    instances: list[Instance]
    topic: str
    private: Path
    public: Path


def wait_for(pred: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def fleet(gateway_factory: GatewayFactory, tmp_path: Path, broker: Mosquitto) -> Iterator[Fleet]:
    private, public = write_key_pair(tmp_path / "keys")
    topic = f"$mqttgate/policy-{uuid.uuid4().hex[:8]}"
    instances = []
    for n in range(2):
        audit_log = tmp_path / f"audit{n}.jsonl"
        gt = gateway_factory(policy=json.dumps(OLD), extra=f'[audit]\nlog_file = "{audit_log}"\n')
        assert gt.gateway is not None
        config = FleetConfig(
            enabled=True,
            control_topic=topic,
            public_key_files=(str(public),),
            instance=f"test{n}",
            reconnect_s=0.2,
        )
        gateway = gt.gateway

        async def boot(config: FleetConfig = config, gateway: Any = gateway) -> FleetPolicySync:
            sync = FleetPolicySync(gateway, config)
            await sync.start()
            return sync

        inst = Instance(gt, gt.call(boot()), audit_log)
        instances.append(inst)
    for inst in instances:
        wait_for(lambda inst=inst: inst.sync.connected)  # type: ignore[misc]
    yield Fleet(instances, topic, private, public)
    with BrokerSpy(broker.port, "unused") as spy:
        spy.publish(topic, b"", retain=True)  # clear the retained envelope
    for inst in instances:
        inst.gt.call(inst.sync.stop())


async def test_signed_update_reaches_both_and_revokes(
    fleet: Fleet, broker: Mosquitto, tmp_path: Path
) -> None:
    a, b = fleet.instances
    client = a.gt.client(version=5, sub="reader")
    client.connect()
    assert client.subscribe("news/#", 1)[0].value == 1
    new_file = tmp_path / "new.json"
    new_file.write_text(json.dumps(NEW))
    version = await publish_policy(
        new_file,
        broker=f"mqtt://127.0.0.1:{broker.port}",
        signing_key=fleet.private,
        control_topic=fleet.topic,
    )
    for inst in (a, b):
        wait_for(lambda inst=inst: inst.version == version)  # type: ignore[misc]
        status = inst.sync.status()
        assert status["active_version"] == version and status["last_error"] is None
        assert f'version="{version}"' in inst.sync.prometheus_text()
        # Persisted: a restart starts from the fleet's policy.
        assert inst.gt.policy_path.read_text() == json.dumps(NEW)
        [rec] = inst.audit()
        assert rec["verdict"] == "allow" and rec["policy_version"] == version
    # The live subscription the new policy refuses delivers nothing any more.
    with BrokerSpy(broker.port, "unused") as spy:
        spy.publish("news/1", b"after", qos=1)
    client.expect_none(0.5)
    client.disconnect()


def _signed(fleet: Fleet, doc: dict[str, Any], **kw: Any) -> bytes:
    from gateway.server.admin_api import policy_from_text

    text = json.dumps(doc)
    return sign_policy(
        text, policy_from_text(text, "t").version, load_private_key(fleet.private), **kw
    )


def _publish_raw(broker: Mosquitto, topic: str, data: bytes) -> None:
    with BrokerSpy(broker.port, "unused") as spy:
        spy.publish(topic, data, retain=True)


def _tampered(fleet: Fleet) -> bytes:
    raw = orjson.loads(_signed(fleet, NEW))
    raw["policy"] = json.dumps(policy("#"))  # widen it, keep the signature
    return orjson.dumps(raw)


def _unsigned(fleet: Fleet) -> bytes:
    return json.dumps(policy("#")).encode()


def _foreign(fleet: Fleet) -> bytes:
    other, _ = write_key_pair(fleet.private.parent / "other", "evil")
    text = json.dumps(policy("#"))
    from gateway.server.admin_api import policy_from_text

    return sign_policy(text, policy_from_text(text, "t").version, load_private_key(other))


def _bad_policy(fleet: Fleet) -> bytes:
    text = '{"version": "2.0", "rules": "no"}'
    return sign_policy(text, "x", load_private_key(fleet.private))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_tampered, "bad_signature"),
        (_unsigned, "unsigned"),
        (_foreign, "unknown_key"),
        (_bad_policy, "invalid_policy"),
    ],
)
def test_refused_on_both_and_audited(
    fleet: Fleet, broker: Mosquitto, make: Callable[[Fleet], bytes], reason: str
) -> None:
    before = [inst.version for inst in fleet.instances]
    _publish_raw(broker, fleet.topic, make(fleet))
    for inst in fleet.instances:
        wait_for(lambda inst=inst: bool(inst.audit()))  # type: ignore[misc]
        [rec] = inst.audit()
        assert rec["verdict"] == "deny" and rec["reason"] == reason
        assert inst.sync.status()["last_error"].startswith(reason)
        assert 'outcome="refused"} 1' in inst.sync.prometheus_text()
    assert [inst.version for inst in fleet.instances] == before


def test_replayed_older_envelope_is_stale(fleet: Fleet, broker: Mosquitto) -> None:
    old_envelope = _signed(fleet, policy("a/#"), issued_at=time.time() - 60)
    _publish_raw(broker, fleet.topic, _signed(fleet, NEW))
    for inst in fleet.instances:
        wait_for(lambda inst=inst: inst.sync.applied == 1)  # type: ignore[misc]
    version = fleet.instances[0].version
    _publish_raw(broker, fleet.topic, old_envelope)
    for inst in fleet.instances:
        wait_for(lambda inst=inst: inst.sync.refused == 1)  # type: ignore[misc]
        assert inst.version == version
        assert inst.audit()[-1]["reason"] == "stale"


def test_a_replay_retained_across_a_restart_is_stale(fleet: Fleet, broker: Mosquitto) -> None:
    """The control topic retains an older signed envelope (a replay) when an instance
    restarts: the state kept beside its policy file makes it refuse that one too."""
    old_envelope = _signed(fleet, policy("a/#"), issued_at=time.time() - 60)
    _publish_raw(broker, fleet.topic, _signed(fleet, NEW))
    inst = fleet.instances[0]
    wait_for(lambda: inst.sync.applied == 1)
    version = inst.version
    _publish_raw(broker, fleet.topic, old_envelope)  # now the retained one
    wait_for(lambda: inst.sync.refused == 1)
    inst.gt.call(inst.sync.stop())
    assert inst.gt.gateway is not None
    gateway = inst.gt.gateway

    async def restart() -> FleetPolicySync:
        again = FleetPolicySync(gateway, inst.sync.config)
        await again.start()
        return again

    inst.sync = inst.gt.call(restart())
    assert inst.sync.floors[None].version == version
    wait_for(lambda: inst.sync.refused == 1)
    assert inst.sync.applied == 0 and inst.version == version
    assert inst.audit()[-1]["reason"] == "stale"


def test_cli_publish_command(fleet: Fleet, broker: Mosquitto, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="mqttgate acl")
    add_fleet_commands(parser.add_subparsers(dest="acl_command"))
    new_file = tmp_path / "cli.json"
    new_file.write_text(json.dumps(policy("cli/#")))
    args = parser.parse_args(
        [
            "publish",
            str(new_file),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--signing-key",
            str(fleet.private),
            "--topic",
            fleet.topic,
        ]
    )
    assert args.func(args) == 0
    for inst in fleet.instances:
        wait_for(lambda inst=inst: inst.sync.applied == 1)  # type: ignore[misc]
    # An invalid policy is never published.
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    args = parser.parse_args(
        [
            "publish",
            str(bad),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--signing-key",
            str(fleet.private),
            "--topic",
            fleet.topic,
        ]
    )
    assert args.func(args) == 1
    # An unreachable broker is an error, not a hang.
    from tests.support.mosquitto import free_port

    args = parser.parse_args(
        [
            "publish",
            str(new_file),
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
            "--signing-key",
            str(fleet.private),
            "--topic",
            fleet.topic,
            "--timeout",
            "2",
        ]
    )
    assert args.func(args) == 1
