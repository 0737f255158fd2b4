"""An org's own policy through the fleet ([tenancy] + [fleet]): signed for one org,
published on <control topic>/orgs/<org>, applied to that org's sessions only, kept in its
policy file; an envelope whose signed org is not its topic's is refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.fleet.config import FleetConfig
from gateway.fleet.envelope import load_private_key, sign_policy, write_key_pair
from gateway.fleet.publish import publish_policy
from gateway.fleet.sync import FleetPolicySync
from gateway.server.admin_api import policy_from_text
from tests.conftest import GatewayFactory
from tests.fleet.test_fleet_sync import policy, wait_for
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy


@dataclass
class OrgFleet:
    gt: GatewayThread
    sync: FleetPolicySync
    topic: str
    private: Path
    policies: Path


@pytest.fixture
def org_fleet(
    gateway_factory: GatewayFactory, tmp_path: Path, broker: Mosquitto
) -> Iterator[OrgFleet]:
    private, public = write_key_pair(tmp_path / "keys")
    topic = f"$mqttgate/policy-{uuid.uuid4().hex[:8]}"
    policies = tmp_path / "policies"
    policies.mkdir()
    run = uuid.uuid4().hex[:6]
    gt = gateway_factory(
        policy=json.dumps(policy("#")),
        extra=(
            f'[tenancy]\nenabled = true\nmount = "t{run}/{{org}}/"\npolicies_dir = "{policies}"\n'
        ),
    )
    assert gt.gateway is not None
    gateway = gt.gateway
    config = FleetConfig(
        enabled=True,
        control_topic=topic,
        public_key_files=(str(public),),
        instance="orgs",
        reconnect_s=0.2,
    )

    async def boot() -> FleetPolicySync:
        sync = FleetPolicySync(gateway, config)
        await sync.start()
        return sync

    sync = gt.call(boot())
    wait_for(lambda: sync.connected)
    fleet = OrgFleet(gt, sync, topic, private, policies)
    yield fleet
    with BrokerSpy(broker.port, "unused") as spy:
        for org in ("acme", "globex"):
            spy.publish(f"{topic}/orgs/{org}", b"", retain=True)
        spy.publish(topic, b"", retain=True)
    gt.call(fleet.sync.stop())


def _signed(fleet: OrgFleet, doc: dict[str, Any], org: str | None) -> bytes:
    text = json.dumps(doc)
    version = policy_from_text(text, "t").version
    return sign_policy(text, version, load_private_key(fleet.private), org=org)


def _publish_raw(broker: Mosquitto, topic: str, data: bytes) -> None:
    with BrokerSpy(broker.port, "unused") as spy:
        spy.publish(topic, data, retain=True)


def _subscriptions(fleet: OrgFleet, org: str) -> list[str]:
    assert fleet.gt.gateway is not None
    return [
        f
        for conn in fleet.gt.gateway.connections
        if conn.org == org
        for f in conn.session.subscriptions.active
    ]


async def test_an_org_policy_reaches_only_that_org(
    org_fleet: OrgFleet, broker: Mosquitto, tmp_path: Path
) -> None:
    acme = org_fleet.gt.client(sub="a1", claims={"org_id": "acme"}, version=5)
    acme.connect()
    acme.subscribe("news/x", 1)
    globex = org_fleet.gt.client(sub="g1", claims={"org_id": "globex"}, version=5)
    globex.connect()
    globex.subscribe("news/x", 1)
    narrowed = tmp_path / "acme.json"
    narrowed.write_text(json.dumps(policy("other/#")))
    version = await publish_policy(
        narrowed,
        broker=f"mqtt://127.0.0.1:{broker.port}",
        signing_key=org_fleet.private,
        control_topic=org_fleet.topic,
        org="acme",
    )
    sync = org_fleet.sync
    wait_for(lambda: sync.status()["orgs"].get("acme") == version)
    assert org_fleet.gt.gateway is not None
    tenants = org_fleet.gt.gateway.tenants
    assert tenants is not None
    assert tenants.policy_for("acme").version == version  # type: ignore[union-attr]
    assert tenants.policy_for("globex") is None  # still the default policy
    # acme's live subscription is revoked; globex's is not; the default is untouched.
    wait_for(lambda: _subscriptions(org_fleet, "acme") == [])
    assert _subscriptions(org_fleet, "globex") == ["news/x"]
    assert sync.active is None
    # Kept where the org's policy is read from: a restart starts from it.
    assert (org_fleet.policies / "acme.json").read_text() == narrowed.read_text()
    assert sync.floors["acme"].version == version
    acme.disconnect()
    globex.disconnect()


@pytest.mark.parametrize(
    ("signed_for", "topic_org"),
    [("acme", "globex"), (None, "acme"), ("acme", None)],
    ids=["other-org", "default-on-org-topic", "org-on-default-topic"],
)
def test_an_envelope_on_another_orgs_topic_is_refused(
    org_fleet: OrgFleet, broker: Mosquitto, signed_for: str | None, topic_org: str | None
) -> None:
    topic = org_fleet.topic if topic_org is None else f"{org_fleet.topic}/orgs/{topic_org}"
    _publish_raw(broker, topic, _signed(org_fleet, policy("#"), signed_for))
    wait_for(lambda: org_fleet.sync.refused == 1)
    assert org_fleet.sync.last_error is not None
    assert org_fleet.sync.last_error.startswith("org_mismatch")
    assert org_fleet.sync.applied == 0 and org_fleet.sync.org_active == {}


def test_the_org_is_signed(org_fleet: OrgFleet, broker: Mosquitto) -> None:
    """Moving an org's envelope to another org's topic and rewriting its org field breaks
    the signature."""
    raw = orjson.loads(_signed(org_fleet, policy("#"), "acme"))
    raw["org"] = "globex"
    _publish_raw(broker, f"{org_fleet.topic}/orgs/globex", orjson.dumps(raw))
    wait_for(lambda: org_fleet.sync.refused == 1)
    assert org_fleet.sync.last_error is not None
    assert org_fleet.sync.last_error.startswith("bad_signature")
