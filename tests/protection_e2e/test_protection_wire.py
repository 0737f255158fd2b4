"""Encryption at rest and retention through the gateway, end to end (issue 10)."""

from __future__ import annotations

import base64
import os
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

VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


@pytest.fixture
def gw(gateway_factory: GatewayFactory, tmp_path: Path) -> GatewayThread:
    key = tmp_path / "k1.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode())
    return gateway_factory(
        extra=f"""
[protection]
sweeper_db = "{tmp_path / "retention.sqlite"}"
sweep_interval_s = 0.2

[[protection.encrypt]]
topics = ["vault/#"]

[[protection.keys]]
id = "k1"
key_file = "{key}"

[[protection.retain]]
topics = ["ephemeral/#"]
retained_ttl_s = 1
""",
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_broker_sees_ciphertext_clients_see_plaintext(
    gw: GatewayThread, broker: Mosquitto, version: int
) -> None:
    t = f"vault/{uuid.uuid4().hex[:8]}"
    secret = b"the launch code is 0000"
    with BrokerSpy(broker.port, f"{t}/#") as spy:
        sub = gw.client(version=version)
        sub.connect()
        sub.subscribe(f"{t}/#", 1)
        pub = gw.client(version=version)
        pub.connect()
        props = None
        if version == 5:
            props = v5_props(3, PayloadFormatIndicator=1, ContentType="text/plain")
        pub.publish(f"{t}/a", secret, 1, retain=True, properties=props)
        got = sub.expect()
        assert got.payload == secret
        if version == 5:
            assert got.properties.ContentType == "text/plain"
            assert got.properties.PayloadFormatIndicator == 1
        seen = spy.seen()
        assert len(seen) == 1 and secret not in seen[0][1] and len(seen[0][1]) > len(secret)
        # A retained message opens for a later subscriber too.
        late = gw.client(version=version)
        late.connect()
        late.subscribe(f"{t}/a", 1)
        assert late.expect().payload == secret
        pub.publish(f"{t}/a", b"", 1, retain=True)
        for c in (sub, pub, late):
            c.disconnect()


def test_forged_and_replayed_ciphertext_dropped(gw: GatewayThread, broker: Mosquitto) -> None:
    t = f"vault/{uuid.uuid4().hex[:8]}"
    sub = gw.client(version=5)
    sub.connect()
    sub.subscribe(f"{t}/#", 1)
    with BrokerSpy(broker.port, f"{t}/#") as spy:
        pub = gw.client(version=5)
        pub.connect()
        pub.publish(f"{t}/a", b"genuine", 1)
        assert sub.expect().payload == b"genuine"
        sealed = spy.seen()[0][1]
        # Straight on the broker: plaintext, a replay onto another topic, a flipped byte.
        spy.publish(f"{t}/b", b"plain text, not an envelope", 1)
        spy.publish(f"{t}/b", sealed, 1)
        spy.publish(f"{t}/a", sealed[:-1] + bytes([sealed[-1] ^ 1]), 1)
        sub.expect_none(1.0)
    assert gw.gateway is not None
    # Each of the three was dropped and audited as a refused delivery.
    assert gw.gateway.audit_pipeline.metrics.decisions.get(("delivery", "deny"), 0) >= 3
    pub.disconnect()
    sub.disconnect()


def test_retained_ttl_swept(gw: GatewayThread, broker: Mosquitto) -> None:
    t = f"ephemeral/{uuid.uuid4().hex[:8]}"
    pub = gw.client(version=4)  # v3.1.1: no expiry interval, the sweeper clears it
    pub.connect()
    pub.publish(t, b"short-lived", 1, retain=True)
    first = gw.client(version=4)
    first.connect()
    first.subscribe(t, 1)
    assert first.expect().retain
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        time.sleep(0.3)
        probe = gw.client(version=4)
        probe.connect()
        probe.subscribe(t, 1)
        try:
            probe.expect(timeout=0.3)
        except queue.Empty:
            probe.disconnect()
            break
        probe.disconnect()
    else:
        raise AssertionError("the retained message was not cleared after its TTL")
    pub.disconnect()
    first.disconnect()


def test_purge_through_the_admin_api(
    gateway_factory: GatewayFactory, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("MQTTGATE_TEST_PURGE_TOKEN", "purge-admin-token")
    gw = gateway_factory(admin='token_env = "MQTTGATE_TEST_PURGE_TOKEN"')
    base = f"purge{uuid.uuid4().hex[:6]}"
    with BrokerSpy(broker.port, "$none") as direct:
        for t in (f"{base}/acme/a", f"{base}/acme/b/c", f"{base}/globex/a"):
            direct.publish(t, b"kept?", 1, retain=True)

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "retained",
                "purge",
                "--prefix",
                f"{base}/acme/",
                "--gateway",
                f"http://127.0.0.1:{gw.admin_port}",
                "--token-env",
                "MQTTGATE_TEST_PURGE_TOKEN",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = cli()
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and f"{base}/acme/b/c" in dry.stdout
    assert f"{base}/globex/a" not in dry.stdout
    done = cli("--apply")
    assert done.returncode == 0 and "cleared" in done.stdout
    # Exactly the prefix: globex's retained message is still there.
    c = gw.client(version=4)
    c.connect()
    c.subscribe(f"{base}/#", 1)
    got = c.expect()
    assert got.topic == f"{base}/globex/a"
    c.expect_none()
    c.publish(f"{base}/globex/a", b"", 1, retain=True)
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_offline_queue_holds_ciphertext(gw: GatewayThread, broker: Mosquitto, version: int) -> None:
    t = f"vault/{uuid.uuid4().hex[:8]}"
    cid = f"offline-{uuid.uuid4().hex[:6]}"
    props = v5_props(SessionExpiryInterval=300) if version == 5 else None
    away = gw.client(client_id=cid, version=version, clean=False)
    away.connect(properties=props)
    away.subscribe(f"{t}/#", 1)
    away.disconnect()
    with BrokerSpy(broker.port, f"{t}/#") as spy:
        pub = gw.client(version=version)
        pub.connect()
        pub.publish(f"{t}/q", b"queued secret", 1)
        pub.disconnect()
        stored = spy.seen()
    assert len(stored) == 1 and b"queued secret" not in stored[0][1]
    back = gw.client(client_id=cid, version=version, clean=False)
    back.connect(properties=props)
    assert back.expect().payload == b"queued secret"
    back.disconnect()


def test_policy_rule_sets_retained_ttl(
    gateway_factory: GatewayFactory, broker: Mosquitto, tmp_path: Path
) -> None:
    """A rule's retained_ttl_s: v5 gets a Message Expiry Interval, v3.1.1 is swept."""
    import json

    policy = json.dumps(
        {
            "version": "2.0",
            "default_action": "deny",
            "rules": [
                {
                    "id": "short",
                    "topic": "ttl/#",
                    "action": "all",
                    "effect": "allow",
                    "retain": True,
                    "retained_ttl_s": 1,
                },
            ],
        }
    )
    gw = gateway_factory(
        policy=policy,
        extra=(f'[protection]\nsweeper_db = "{tmp_path / "r.sqlite"}"\nsweep_interval_s = 0.2\n'),
    )
    t = f"ttl/{uuid.uuid4().hex[:8]}"
    with BrokerSpy(broker.port, "$none"):
        pub5 = gw.client(version=5)
        pub5.connect()
        pub5.publish(f"{t}/v5", b"x", 1, retain=True)
        pub3 = gw.client(version=4)
        pub3.connect()
        pub3.publish(f"{t}/v3", b"x", 1, retain=True)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        time.sleep(0.4)
        probe = gw.client(version=4)
        probe.connect()
        probe.subscribe(f"{t}/#", 1)
        try:
            probe.expect(timeout=0.3)
        except queue.Empty:
            probe.disconnect()
            break
        probe.disconnect()
    else:
        raise AssertionError("retained messages outlived the rule's TTL")
    pub5.disconnect()
    pub3.disconnect()


def test_retention_survives_a_gateway_restart(
    gateway_factory: GatewayFactory, broker: Mosquitto, tmp_path: Path
) -> None:
    """The schedule is in SQLite: a clear that falls due while the gateway is down
    happens when it is back."""
    db = tmp_path / "restart.sqlite"
    extra = (
        f'[protection]\nsweeper_db = "{db}"\nsweep_interval_s = 0.2\n'
        '[[protection.retain]]\ntopics = ["linger/#"]\nretained_ttl_s = 2\n'
    )
    first = gateway_factory(extra=extra)
    t = f"linger/{uuid.uuid4().hex[:8]}"
    pub = first.client(version=4)
    pub.connect()
    pub.publish(t, b"remember me", 1, retain=True)
    pub.disconnect()
    first.stop()  # down before the TTL passes
    time.sleep(2.2)
    probe_direct = BrokerSpy(broker.port, t)
    assert [p for _, p, _ in probe_direct.seen(0.5)] == [b"remember me"]  # still there
    probe_direct.close()
    second = gateway_factory(extra=extra)  # same schedule file
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        time.sleep(0.3)
        probe = BrokerSpy(broker.port, t)
        seen = probe.seen(0.3)
        probe.close()
        if not seen:
            break
    else:
        raise AssertionError("the restarted gateway did not clear the due retained message")
    assert second.gateway is not None


def test_sighup_reloads_the_keyring(
    gateway_factory: GatewayFactory, broker: Mosquitto, tmp_path: Path
) -> None:
    """``mqttgate keys rotate`` / ``retire`` take effect on a running gateway at SIGHUP:
    after a rotation new messages still flow; after retiring the old key, what it sealed
    no longer opens, while what the new key sealed does."""
    from gateway.protection.keyring import retire, rotate

    ring = tmp_path / "ring.json"
    rotate(ring, None, "k1")
    ring.chmod(0o600)
    gw = gateway_factory(
        extra=f"""
[protection]
keyring_file = "{ring}"
sweeper_db = "{tmp_path / "retention.sqlite"}"

[[protection.encrypt]]
topics = ["vault/#"]
""",
    )
    assert gw.gateway is not None
    gateway = gw.gateway

    async def sighup() -> None:
        gateway.on_sighup()

    t = f"vault/{uuid.uuid4().hex[:8]}"
    pub = gw.client(version=5)
    pub.connect()
    pub.publish(f"{t}/old", b"sealed with k1", 1, retain=True)
    rotate(ring, None, "k2")
    gw.call(sighup())
    pub.publish(f"{t}/new", b"sealed with k2", 1, retain=True)
    retire(ring, "k1", None)
    gw.call(sighup())
    sub = gw.client(version=5)
    sub.connect()
    sub.subscribe(f"{t}/#", 1)
    got = sub.expect()
    assert (got.topic, got.payload) == (f"{t}/new", b"sealed with k2")
    sub.expect_none(1.0)  # the k1 message is dropped: its key is retired
    # A keyring that cannot be read leaves the keys in force.
    ring.write_text("not a keyring")
    assert not gateway.reload_keyring()
    pub.publish(f"{t}/later", b"still sealed with k2", 1)
    assert sub.expect().payload == b"still sealed with k2"
    for topic in ("old", "new"):
        pub.publish(f"{t}/{topic}", b"", 1, retain=True)
    pub.disconnect()
    sub.disconnect()
