"""The policy enforced at the wire, end to end: real Mosquitto, paho and raw clients.

Each refusal is checked twice: what the client sees, and that nothing reached the broker
(a spy client subscribed to ``#`` straight on the broker).
"""

from __future__ import annotations

import queue
import time
import uuid

import orjson
import pytest

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from gateway.mqtt.properties import Properties
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.rawclient import RawClient
from tests.support.spy import BrokerSpy

VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def policy(*rules: dict[str, object]) -> str:
    return orjson.dumps({"version": "2.0", "default_action": "deny", "rules": list(rules)}).decode()


# Topics are per user ({user_id}) so tests running against the shared broker never meet.
POLICY = policy(
    {
        "id": "own",
        "topic": "e/{user_id}/own/#",
        "action": "all",
        "effect": "allow",
        "qos": [0, 1, 2],
    },
    {"id": "plus", "topic": "e/{user_id}/plus/+", "action": "subscribe", "effect": "allow"},
    {"id": "pubplus", "topic": "e/{user_id}/plus/+", "action": "publish", "effect": "allow"},
    {
        "id": "wide",
        "topic": "e/{user_id}/wide/#",
        "action": "all",
        "effect": "allow",
        "qos": [0, 1, 2],
    },
    {"id": "no-secret", "topic": "e/{user_id}/wide/secret", "action": "all", "effect": "deny"},
    {
        "id": "low-qos",
        "topic": "e/{user_id}/low/#",
        "action": "all",
        "effect": "allow",
        "qos": [0, 1],
    },
    {
        "id": "retain-ok",
        "topic": "e/{user_id}/state/#",
        "action": "publish",
        "effect": "allow",
        "retain": True,
    },
    {
        "id": "will",
        "topic": "e/{user_id}/will",
        "action": "publish",
        "effect": "allow",
        "qos": [0, 1],
    },
)


def user() -> str:
    return "u" + uuid.uuid4().hex[:10]


def codes(rcs: list[object]) -> list[int]:
    return [int(getattr(r, "value", r)) for r in rcs]  # type: ignore[call-overload]


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> GatewayThread:
    return gateway_factory(policy=POLICY)


@pytest.mark.parametrize("version", VERSIONS)
def test_subscribe_mixed_allowed_and_refused(gw: GatewayThread, version: int) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    got = c.subscribe_many([(f"e/{u}/own/a", 1), (f"e/{u}/other", 1), (f"e/{u}/own/b", 2)])
    refused = 0x87 if version == 5 else 0x80
    assert codes(got) == [1, refused, 2]
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_plus_does_not_admit_hash(gw: GatewayThread, version: int) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    refused = 0x87 if version == 5 else 0x80
    assert codes(c.subscribe(f"e/{u}/plus/x", 0)) == [0]
    assert codes(c.subscribe(f"e/{u}/plus/+", 0)) == [0]
    assert codes(c.subscribe(f"e/{u}/plus/#", 0)) == [refused]
    assert codes(c.subscribe(f"e/{u}/plus/x/y", 0)) == [refused]
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_subscription_overlapping_a_deny(gw: GatewayThread, version: int) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    refused = 0x87 if version == 5 else 0x80
    assert codes(c.subscribe(f"e/{u}/wide/#", 0)) == [refused]
    assert codes(c.subscribe(f"e/{u}/wide/+", 0)) == [refused]
    assert codes(c.subscribe(f"e/{u}/wide/public", 0)) == [0]
    assert codes(c.subscribe(f"e/{u}/wide/secret", 0)) == [refused]
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_qos_downgraded_not_refused(gw: GatewayThread, version: int) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    assert codes(c.subscribe(f"e/{u}/low/x", 2)) == [1]
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_publish_never_reaches_broker(
    gw: GatewayThread, broker: Mosquitto, version: int
) -> None:
    u = user()
    with BrokerSpy(broker.port, f"e/{u}/#") as spy:
        c = gw.client(sub=u, version=version)
        c.connect()
        for qos in (0, 1, 2):
            c.publish(f"e/{u}/forbidden/q{qos}", b"no", qos)  # acknowledged, as configured
            c.publish(f"e/{u}/own/q{qos}", b"yes", qos)
        c.publish(f"e/{u}/wide/secret", b"no", 1)
        c.publish(f"e/{u}/low/x", b"no", 2)  # QoS not allowed by the rule
        c.publish(f"e/{u}/own/r", b"no", 1, retain=True)  # retain not allowed
        c.publish(f"e/{u}/state/r", b"yes", 1, retain=True)
        seen = spy.seen()
        c.disconnect()
    assert sorted(t for t, _, _ in seen) == sorted(
        [f"e/{u}/own/q0", f"e/{u}/own/q1", f"e/{u}/own/q2", f"e/{u}/state/r"]
    )
    assert all(p == b"yes" for _, p, _ in seen)


async def test_refused_publish_reason_codes_v5(gw: GatewayThread, broker: Mosquitto) -> None:
    u = user()
    with BrokerSpy(broker.port, f"e/{u}/#") as spy:
        async with RawClient(gw.port, gw.certs / "ca.pem", 5) as c:
            await c.send(Connect("raw-" + u, protocol_level=5, password=gw.idp.token(u).encode()))
            assert isinstance(await c.recv(), Connack)
            await c.send(Publish(f"e/{u}/nope", b"x", 1, packet_id=10))
            assert await c.recv() == Puback(10, 0x87)
            await c.send(Publish(f"e/{u}/nope", b"x", 2, packet_id=11))
            assert await c.recv() == Pubrec(11, 0x87)
            await c.send(Pubrel(11))
            assert await c.recv() == Pubcomp(11)
            # Same packet id reused for an allowed QoS 2 publish: the broker's flow.
            await c.send(Publish(f"e/{u}/own/ok", b"x", 2, packet_id=11))
            assert await c.recv() == Pubrec(11)
            await c.send(Pubrel(11))
            assert await c.recv() == Pubcomp(11)
        assert spy.topics() == [f"e/{u}/own/ok"]


async def test_refused_publish_v311_disconnect_mode(
    gateway_factory: GatewayFactory, broker: Mosquitto
) -> None:
    gw = gateway_factory(policy=POLICY, acl='on_publish_deny = "disconnect"')
    u = user()
    with BrokerSpy(broker.port, f"e/{u}/#") as spy:
        async with RawClient(gw.port, gw.certs / "ca.pem", 4) as c:
            await c.send(Connect("raw-" + u, password=gw.idp.token(u).encode(), username="x"))
            assert await c.recv() == Connack(False, 0)
            await c.send(Publish(f"e/{u}/nope", b"x", 1, packet_id=3))
            with pytest.raises(ConnectionError):
                await c.recv()
        assert spy.topics() == []


async def test_topic_alias_cannot_bypass(gw: GatewayThread, broker: Mosquitto) -> None:
    u = user()
    alias = lambda n: Properties([(PropertyId.TOPIC_ALIAS, n)])  # noqa: E731
    with BrokerSpy(broker.port, f"e/{u}/#") as spy:
        async with RawClient(gw.port, gw.certs / "ca.pem", 5) as c:
            await c.send(Connect("alias-" + u, protocol_level=5, password=gw.idp.token(u).encode()))
            connack = await c.recv()
            assert isinstance(connack, Connack)
            assert connack.properties.get(PropertyId.TOPIC_ALIAS_MAXIMUM) == 64
            # 1 -> an allowed topic; 2 -> a refused one.
            await c.send(Publish(f"e/{u}/own/a", b"ok-1", 1, packet_id=1, properties=alias(1)))
            assert await c.recv() == Puback(1)
            await c.send(Publish(f"e/{u}/secret", b"no-1", 1, packet_id=2, properties=alias(2)))
            assert await c.recv() == Puback(2, 0x87)
            # Alias only (empty topic): each is checked on the topic it stands for.
            await c.send(Publish("", b"no-2", 1, packet_id=3, properties=alias(2)))
            assert await c.recv() == Puback(3, 0x87)
            await c.send(Publish("", b"ok-2", 1, packet_id=4, properties=alias(1)))
            assert await c.recv() == Puback(4)
            # Re-pointing alias 1 at a refused topic, then using it, is refused.
            await c.send(Publish(f"e/{u}/secret", b"no-3", 1, packet_id=5, properties=alias(1)))
            assert await c.recv() == Puback(5, 0x87)
            await c.send(Publish("", b"no-4", 1, packet_id=6, properties=alias(1)))
            assert await c.recv() == Puback(6, 0x87)
            # Above the maximum the gateway announced: Topic Alias invalid.
            await c.send(Publish(f"e/{u}/own/z", b"no-5", 0, properties=alias(65)))
            assert await c.recv() == Disconnect(0x94)
        seen = spy.seen()
    assert [(t, p) for t, p, _ in seen] == [(f"e/{u}/own/a", b"ok-1"), (f"e/{u}/own/a", b"ok-2")]


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_will(gw: GatewayThread, broker: Mosquitto, version: int) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.will_set(f"e/{u}/elsewhere", b"bye", 1)
    rc = c.connect(expect_ok=False)
    assert rc.getName() == "Not authorized"
    c.c.loop_stop()
    ok = gw.client(sub=u, version=version)
    ok.will_set(f"e/{u}/will", b"bye", 1)
    ok.connect()
    ok.disconnect()
    retained_will = gw.client(sub=u, version=version)
    retained_will.will_set(f"e/{u}/will", b"bye", 1, retain=True)  # retain not permitted
    assert retained_will.connect(expect_ok=False).getName() == "Not authorized"
    retained_will.c.loop_stop()


async def test_refused_will_v311_code(gw: GatewayThread) -> None:
    u = user()
    async with RawClient(gw.port, gw.certs / "ca.pem", 4) as c:
        will = Will(f"e/{u}/elsewhere", b"bye", 1)
        await c.send(Connect("w-" + u, username="x", password=gw.idp.token(u).encode(), will=will))
        assert await c.recv() == Connack(False, 0x05)


@pytest.mark.parametrize("version", VERSIONS)
def test_deliveries_from_a_direct_publisher(
    gw: GatewayThread, broker: Mosquitto, version: int
) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    c.subscribe(f"e/{u}/own/#", 1)
    with BrokerSpy(broker.port, "$none") as direct:
        direct.publish(f"e/{u}/own/x", b"from-broker", 1)
        assert c.expect().payload == b"from-broker"
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_policy_change_revokes_live_subscription(
    gw: GatewayThread, broker: Mosquitto, version: int
) -> None:
    u = user()
    c = gw.client(sub=u, version=version)
    c.connect()
    c.subscribe(f"e/{u}/own/#", 1)
    c.subscribe(f"e/{u}/low/#", 1)
    with BrokerSpy(broker.port, "$none") as direct:
        direct.publish(f"e/{u}/own/x", b"before", 1)
        assert c.expect().payload == b"before"
        # The new policy drops "own"; "low" stays.
        doc = orjson.loads(POLICY)
        doc["rules"] = [r for r in doc["rules"] if r["id"] != "own"]
        gw.policy_path.write_bytes(orjson.dumps(doc))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert gw.gateway is not None
            if not any(r.id == "own" for r in gw.gateway.policy.rules):
                break
            time.sleep(0.05)
        direct.publish(f"e/{u}/own/x", b"after", 1)
        direct.publish(f"e/{u}/low/x", b"still", 1)
        got = c.expect()
        assert got.payload == b"still"
        c.expect_none()
        # The revocation reached the broker too: the subscription is gone upstream.
        conns = list(gw.gateway.connections) if gw.gateway else []
        assert all(f"e/{u}/own/#" not in x.session.subscriptions.active for x in conns)
    c.disconnect()


async def test_subscribe_all_refused_answered_by_gateway(gw: GatewayThread) -> None:
    u = user()
    async with RawClient(gw.port, gw.certs / "ca.pem", 5) as c:
        await c.send(Connect("s-" + u, protocol_level=5, password=gw.idp.token(u).encode()))
        assert isinstance(await c.recv(), Connack)
        await c.send(
            Subscribe(
                7, (Subscription(f"e/{u}/x", 1), Subscription("#", 0), Subscription("$SYS/#", 0))
            )
        )
        assert await c.recv() == Suback(7, (0x87, 0x87, 0x87))


SHARE_POLICY = policy(
    {
        "id": "jobs",
        "topic": "jobs/{user_id}/#",
        "action": "subscribe",
        "effect": "allow",
        "share_group": "workers",
    },
    {"id": "post", "topic": "jobs/{user_id}/#", "action": "publish", "effect": "allow"},
)


def test_shared_subscription_passes_through(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(policy=SHARE_POLICY)
    u = user()
    workers = [gw.client(sub=u, version=5) for _ in range(2)]
    for w in workers:
        w.connect()
        assert codes(w.subscribe(f"$share/workers/jobs/{u}/#", 1)) == [1]
    outsider = gw.client(sub=u, version=5)
    outsider.connect()
    assert codes(outsider.subscribe(f"$share/others/jobs/{u}/#", 1)) == [0x87]
    assert codes(outsider.subscribe(f"jobs/{u}/#", 1)) == [0x87]  # only in the group
    for i in range(6):
        outsider.publish(f"jobs/{u}/t", f"job{i}".encode(), 1)
    got: list[bytes] = []
    for w in workers:
        while True:
            try:
                got.append(w.expect(timeout=1.0).payload)
            except queue.Empty:
                break
    assert sorted(got) == sorted(f"job{i}".encode() for i in range(6))  # each job once
    for c in (*workers, outsider):
        c.disconnect()
