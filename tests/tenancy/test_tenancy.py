"""Organizations are isolated end to end (issue 6, item 1)."""

from __future__ import annotations

import json
import queue
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.paho import v5_props
from tests.support.spy import BrokerSpy

POLICY = json.dumps(
    {
        "version": "2.0",
        "default_action": "deny",
        "rules": [
            {
                "id": "all",
                "topic": "#",
                "action": "all",
                "effect": "allow",
                "retain": True,
                "qos": [0, 1, 2],
            },
        ],
    }
)


@pytest.fixture
def tenancy(tmp_path: Path) -> tuple[str, Path]:
    run = uuid.uuid4().hex[:6]
    policies = tmp_path / "policies"
    policies.mkdir()
    return run, policies


@pytest.fixture
def gw(gateway_factory: GatewayFactory, tenancy: tuple[str, Path]) -> GatewayThread:
    run, policies = tenancy
    return gateway_factory(
        policy=POLICY,
        extra=(
            f'[tenancy]\nenabled = true\nmount = "t{run}/{{org}}/"\npolicies_dir = "{policies}"\n'
        ),
    )


VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
def test_two_orgs_same_topics_and_client_ids_never_meet(
    gw: GatewayThread, broker: Mosquitto, tenancy: tuple[str, Path], version: int
) -> None:
    run, _ = tenancy
    with BrokerSpy(broker.port, f"t{run}/#") as spy:
        clients = {}
        for org in ("acme", "globex"):
            pub = gw.client(
                sub="alice", claims={"org_id": org}, client_id="same-id", version=version
            )
            pub.connect()
            watcher = gw.client(
                sub="watcher", claims={"org_id": org}, client_id="watch", version=version
            )
            watcher.connect()
            watcher.subscribe("#", 1)
            clients[org] = (pub, watcher)
        for org, (pub, _) in clients.items():
            pub.publish("news/today", f"from-{org}".encode(), 1, retain=True)
        for org, (_, watcher) in clients.items():
            m = watcher.expect()
            assert (m.topic, m.payload) == ("news/today", f"from-{org}".encode())
            watcher.expect_none()
        # Retained messages stay in their org too.
        for org in ("acme", "globex"):
            late = gw.client(sub="late", claims={"org_id": org}, version=version)
            late.connect()
            late.subscribe("news/#", 1)
            m = late.expect()
            assert (m.payload, m.retain) == (f"from-{org}".encode(), True)
            late.expect_none()
            late.publish("news/today", b"", 1, retain=True)
            late.disconnect()
        # Both client ids "same-id" are alive: neither took the other's session over.
        for pub, watcher in clients.values():
            assert pub.disconnects.empty() and watcher.disconnects.empty()
            pub.disconnect()
            watcher.disconnect()
        # The broker saw only prefixed topics.
        topics = spy.topics()
    assert set(topics) <= {f"t{run}/acme/news/today", f"t{run}/globex/news/today"}
    assert f"t{run}/acme/news/today" in topics and f"t{run}/globex/news/today" in topics


def test_token_without_org_refused(gw: GatewayThread) -> None:
    c = gw.client(sub="nobody", version=5)
    assert c.connect(expect_ok=False).getName() == "Not authorized"
    c.c.loop_stop()
    bad = gw.client(sub="x", claims={"org_id": "a/b"}, version=5)  # unusable value
    assert bad.connect(expect_ok=False).getName() == "Not authorized"
    bad.c.loop_stop()


def test_will_and_response_topic_stay_in_the_org(gw: GatewayThread) -> None:
    watcher = gw.client(sub="w", claims={"org_id": "acme"}, version=5)
    watcher.connect()
    watcher.subscribe("status/#", 1)
    other = gw.client(sub="w", claims={"org_id": "globex"}, version=5)
    other.connect()
    other.subscribe("status/#", 1)
    dying = gw.client(sub="d", claims={"org_id": "acme"}, version=5, client_id="dying")
    dying.will_set("status/dying", b"gone", 1)
    dying.connect()
    dying.publish("status/req", b"?", 1, properties=v5_props(3, ResponseTopic="status/reply"))
    m = watcher.expect()
    assert m.topic == "status/req"
    assert m.properties.ResponseTopic == "status/reply"  # unprefixed for the client
    dying.drop()
    assert watcher.expect().payload == b"gone"
    other.expect_none(1.0)
    watcher.disconnect()
    other.disconnect()


def test_org_policy_file_and_live_reload(gw: GatewayThread, tenancy: tuple[str, Path]) -> None:
    _, policies = tenancy
    strict = {
        "version": "2.0",
        "default_action": "deny",
        "rules": [{"id": "acme-feed", "topic": "feed/#", "action": "subscribe", "effect": "allow"}],
    }
    (policies / "acme.json").write_text(json.dumps(strict))
    acme = gw.client(sub="a", claims={"org_id": "acme"}, version=5)
    acme.connect()
    assert [r.value for r in acme.subscribe("feed/x", 0)] == [0]
    assert [r.value for r in acme.subscribe("other/x", 0)] == [0x87]
    globex = gw.client(sub="g", claims={"org_id": "globex"}, version=5)
    globex.connect()
    assert [r.value for r in globex.subscribe("other/x", 0)] == [0]  # the default policy
    # acme's file changes: acme's live subscription is revoked, globex is untouched.
    strict["rules"][0]["topic"] = "feed/only/#"
    time.sleep(0.05)
    (policies / "acme.json").write_text(json.dumps(strict))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        conns = [c for c in gw.gateway.connections if c.org == "acme"] if gw.gateway else []
        if conns and not conns[0].session.subscriptions.active:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("acme's subscription was not revoked")
    globex_conns = [c for c in gw.gateway.connections if c.org == "globex"] if gw.gateway else []
    assert "other/x" in globex_conns[0].session.subscriptions.active
    acme.disconnect()
    globex.disconnect()


def test_org_issuers_restricted(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(
        policy=POLICY,
        extra='[tenancy]\nenabled = true\n[tenancy.orgs.acme]\nissuers = ["https://elsewhere"]\n',
    )
    c = gw.client(sub="a", claims={"org_id": "acme"}, version=5)
    assert c.connect(expect_ok=False).getName() == "Not authorized"
    c.c.loop_stop()
    ok = gw.client(sub="a", claims={"org_id": "globex"}, version=5)
    ok.connect()
    ok.disconnect()


def test_hash_sees_only_own_org(
    gw: GatewayThread, broker: Mosquitto, tenancy: tuple[str, Path]
) -> None:
    run, _ = tenancy
    c = gw.client(sub="a", claims={"org_id": "acme"}, version=4)
    c.connect()
    c.subscribe("#", 0)
    with BrokerSpy(broker.port, "$none") as direct:
        direct.publish(f"t{run}/globex/secret", b"no", 1)
        direct.publish("plain/topic", b"no", 1)
        direct.publish(f"t{run}/acme/mine", b"yes", 1)
    m = c.expect()
    assert (m.topic, m.payload) == ("mine", b"yes")
    with pytest.raises(queue.Empty):
        c.messages.get(timeout=0.5)
    c.disconnect()
