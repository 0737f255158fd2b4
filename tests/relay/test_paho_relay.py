"""paho-mqtt over wss through the gateway to a real Mosquitto: MQTT 3.1.1 and 5."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto
from tests.support.recorder import RecordingRelay

VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def prefix() -> str:
    return f"t/{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe(gateway: GatewayThread, certs: Path, version: int, qos: int) -> None:
    t = prefix()
    sub = gateway.client(client_id=f"sub-{t}", version=version)
    pub = gateway.client(client_id=f"pub-{t}", version=version)
    sub.connect()
    pub.connect()
    granted = sub.subscribe(f"{t}/#", qos)
    assert [int(getattr(g, "value", g)) for g in granted] == [qos]
    for i in range(5):
        pub.publish(f"{t}/x", f"m{i}".encode(), qos)
    got = [sub.expect() for _ in range(5)]
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(5)]
    assert all(m.qos == qos and m.topic == f"{t}/x" for m in got)
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_and_unsubscribe(gateway: GatewayThread, certs: Path, version: int) -> None:
    t = prefix()
    pub = gateway.client(version=version)
    pub.connect()
    pub.publish(f"{t}/state", b"on", 1, retain=True)
    sub = gateway.client(version=version)
    sub.connect()
    sub.subscribe(f"{t}/state", 1)
    m = sub.expect()
    assert (m.payload, m.retain) == (b"on", True)
    sub.unsubscribe(f"{t}/state")
    pub.publish(f"{t}/state", b"off", 1)
    sub.expect_none()
    pub.publish(f"{t}/state", b"", 1, retain=True)  # clear the retained message
    pub.disconnect()
    sub.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_will_on_abrupt_close(gateway: GatewayThread, certs: Path, version: int) -> None:
    t = prefix()
    watcher = gateway.client(version=version)
    watcher.connect()
    watcher.subscribe(f"{t}/will", 1)
    dying = gateway.client(client_id=f"dying-{t}", version=version)
    dying.will_set(f"{t}/will", b"gone", 1)
    dying.connect()
    dying.drop()
    assert watcher.expect().payload == b"gone"
    watcher.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_no_will_on_clean_disconnect(gateway: GatewayThread, certs: Path, version: int) -> None:
    t = prefix()
    watcher = gateway.client(version=version)
    watcher.connect()
    watcher.subscribe(f"{t}/will", 1)
    leaving = gateway.client(version=version)
    leaving.will_set(f"{t}/will", b"gone", 1)
    leaving.connect()
    leaving.disconnect()
    watcher.expect_none(1.0)
    watcher.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_one_mebibyte_payload(gateway: GatewayThread, certs: Path, version: int) -> None:
    t = prefix()
    payload = bytes(range(256)) * 4096  # 1 MiB
    sub = gateway.client(version=version)
    pub = gateway.client(version=version)
    sub.connect()
    pub.connect()
    sub.subscribe(f"{t}/big", 1)
    pub.publish(f"{t}/big", payload, 1)
    assert sub.expect(timeout=15).payload == payload
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_session_resume(gateway: GatewayThread, certs: Path, version: int) -> None:
    t = prefix()
    cid = f"persist-{t}"
    first = gateway.client(client_id=cid, version=version, clean=False)
    props = None
    if version == 5:
        from tests.support.paho import v5_props

        props = v5_props(SessionExpiryInterval=300)
    first.connect(properties=props)
    first.subscribe(f"{t}/q", 1)
    first.disconnect()
    pub = gateway.client(version=version)
    pub.connect()
    pub.publish(f"{t}/q", b"while-away", 1)
    pub.disconnect()
    again = gateway.client(client_id=cid, version=version, clean=False)
    again.connect(properties=props)
    assert again.connack_flags.session_present
    assert again.expect().payload == b"while-away"
    again.disconnect()


def test_upstream_down_v311_and_v5(gateway_factory: object, certs: Path, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "down").start()
    port = broker.port
    gt = gateway_factory(upstream_port=port)  # type: ignore[operator]
    broker.stop()
    # paho reports v3.1.1's CONNACK 0x03 as v5's 0x88 too; the bytes are checked in
    # tests/relay/test_websocket.py.
    for version in (4, 5):
        c = gt.client(version=version)
        rc = c.connect(expect_ok=False)
        assert rc.getName() == "Server unavailable"
        c.c.loop_stop()


def test_broker_sees_derived_id_never_the_token(
    gateway_factory: GatewayFactory, broker: Mosquitto, idp: DevIdp
) -> None:
    """What the broker received (a recording relay in between): the gateway's CONNECT,
    with the client id derived from the identity, and no trace of the user's token."""
    relay = RecordingRelay(broker.port).start()
    try:
        gt = gateway_factory(upstream_port=relay.port)
        cid = f"seen-{uuid.uuid4().hex[:8]}"
        token = idp.token("alice")
        c = gt.client(client_id=cid, username="u", token=token)
        c.connect()
        c.publish(f"t/{cid}", b"x", 1)
        c.disconnect()
        received = relay.received()
        assert f"alice:{cid}".encode() in received
        assert token.encode() not in received
        assert token.split(".")[2].encode() not in received  # not even the signature
    finally:
        relay.stop()
