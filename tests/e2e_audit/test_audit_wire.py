"""Every decision on the OTLP wire and in the audit log, end to end (issue 5, items 7-9)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.audit.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread

POLICY = orjson.dumps(
    {
        "version": "2.0",
        "default_action": "deny",
        "rules": [
            {"id": "own", "topic": "aud/{user_id}/#", "action": "all", "effect": "allow"},
        ],
    }
).decode()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def gw(receiver: OtlpReceiver, gateway_factory: GatewayFactory, tmp_path: Path) -> GatewayThread:
    # The receiver is set up first so that it outlives the gateway's final export.
    return gateway_factory(
        policy=POLICY,
        extra=f"""
[audit]
log_file = "{tmp_path / "audit.jsonl"}"
otlp_endpoint = "{receiver.url}"
otlp_protocol = "http/protobuf"
allow_sample_ratio = 0.0
metrics_export_interval_s = 0.5
""",
    )


def named(spans: list[ReceivedSpan], name: str, **attrs: object) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attrs.items())
    ]


async def test_decisions_on_the_wire_and_in_the_log(
    gw: GatewayThread, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    u = "u" + uuid.uuid4().hex[:8]
    c = gw.client(sub=u, version=5, client_id=f"cid-{u}")
    c.connect()
    c.subscribe(f"aud/{u}/in", 1)  # allow: counted and logged, not a span (ratio 0)
    c.subscribe("aud/other/in", 1)  # deny: always a span
    c.publish(f"secret/{u}", b"x", 1)  # deny
    c.disconnect()
    bad = gw.client(sub=u, token="not-a-jwt", version=5)
    assert bad.connect(expect_ok=False).is_failure
    bad.c.loop_stop()

    spans = receiver.wait_for(
        lambda s: (
            len(named(s, "mqttgate.connect")) >= 2
            and len(named(s, "mqttgate.authorize subscribe")) >= 1
            and len(named(s, "mqttgate.authorize publish")) >= 1
        ),
        timeout=10,
    )
    ok = named(spans, "mqttgate.connect", **{"mqttgate.verdict": "allow"})
    assert len(ok) == 1
    a = ok[0].attributes
    assert a["enduser.id"] == u
    assert a["mqttgate.client_id"] == f"cid-{u}"
    assert a["client.address"] == "127.0.0.1"
    assert a["tls.protocol.version"] == "1.3"
    assert a["mqttgate.issuer"] == "https://mqttgate.dev.local"
    refused = named(spans, "mqttgate.connect", **{"mqttgate.verdict": "deny"})
    assert [s.attributes["mqttgate.reason"] for s in refused] == ["malformed"]
    sub_deny = named(spans, "mqttgate.authorize subscribe")
    assert len(sub_deny) == 1  # the allowed subscription is not sampled at ratio 0
    d = sub_deny[0].attributes
    assert d["messaging.destination.name"] == "aud/other/in"
    assert d["mqttgate.verdict"] == "deny" and d["mqttgate.reason"] == "default"
    assert d["mqttgate.policy_version"].startswith("sha256:")
    pub = named(spans, "mqttgate.authorize publish")[0].attributes
    assert pub["messaging.destination.name"] == f"secret/{u}"
    assert pub["mqttgate.qos"] == 1 and pub["enduser.id"] == u
    # No token anywhere on the wire.
    token = gw.idp.token(u)
    assert all(token.split(".")[0] not in str(s.attributes) for s in spans)

    # The audit log has every decision, allows included.
    assert gw.gateway is not None
    gw.gateway.audit_pipeline.flush()
    lines = [orjson.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    subs = [x for x in lines if x.get("action") == "subscribe"]
    assert {(x["topic"], x["verdict"]) for x in subs} == {
        (f"aud/{u}/in", "allow"),
        ("aud/other/in", "deny"),
    }
    assert any(x.get("type") == "connection" and x["outcome"] == "deny" for x in lines)

    # And Prometheus counts them.
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r,
    ):
        text = await r.text()
    assert r.status == 200
    assert 'action="subscribe",verdict="deny"' in text
    assert 'reason="malformed"' in text


def test_nothing_lost_on_clean_shutdown(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    log = tmp_path / "audit2.jsonl"
    gw = gateway_factory(policy=POLICY, extra=f'[audit]\nlog_file = "{log}"\n')
    u = "u" + uuid.uuid4().hex[:8]
    c = gw.client(sub=u, version=4)
    c.connect()
    for i in range(300):
        c.publish(f"aud/{u}/n{i}", b"x", 0)
    c.publish(f"aud/{u}/last", b"x", 1)
    c.disconnect()
    time.sleep(0.2)
    gw.stop()
    pubs = [
        x for x in map(orjson.loads, log.read_text().splitlines()) if x.get("action") == "publish"
    ]
    assert len(pubs) == 301


def test_every_repeated_publish_and_delivery_is_logged(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """With the audit log as the only consumer of allows, repeated packets go on the
    known-packet lane (issue 7) and each still has its own line: the session's ledger."""
    log = tmp_path / "audit3.jsonl"
    gw = gateway_factory(policy=POLICY, extra=f'[audit]\nlog_file = "{log}"\n')
    u = "u" + uuid.uuid4().hex[:8]
    topic = f"aud/{u}/hot"
    sub = gw.client(sub=u, version=5, client_id=f"sub-{u}")
    sub.connect()
    sub.subscribe(topic, 1)
    pub = gw.client(sub=u, version=4, client_id=f"pub-{u}")
    pub.connect()
    for i in range(200):
        pub.publish(topic, b"%d" % i, 0)
    for i in range(100):
        pub.publish(topic, b"q%d" % i, 1)
    for _ in range(300):
        sub.expect()
    pub.disconnect()
    sub.disconnect()
    time.sleep(0.2)
    gw.stop()
    lines = [orjson.loads(x) for x in log.read_bytes().splitlines()]
    pubs = [x for x in lines if x.get("action") == "publish"]
    dels = [x for x in lines if x.get("action") == "delivery"]
    for got, client in ((pubs, f"pub-{u}"), (dels, f"sub-{u}")):
        assert len(got) == 300
        assert {(x["topic"], x["verdict"], x["rule_id"], x["client_id"]) for x in got} == {
            (topic, "allow", "own", client)
        }
        assert [x["qos"] for x in got] == [0] * 200 + [1] * 100
        assert {x["user_id"] for x in got} == {u}
        assert len({x["connection_id"] for x in got}) == 1
        # Most went on the known-packet lane, without a lookup.
        assert sum(1 for x in got if x["decision_ns"] == 0) >= 250
        assert list(got[-1]) == list(pubs[0])  # one field order for every line
        times = [x["time_unix_ns"] for x in got]
        assert times == sorted(times)


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_audit_log_disk_full(gateway_factory: GatewayFactory, mode: str) -> None:
    """/dev/full: every write fails with ENOSPC, as a full disk does."""
    gw = gateway_factory(
        policy=POLICY, extra=f'[audit]\nlog_file = "/dev/full"\non_log_failure = "{mode}"\n'
    )
    first = gw.client(sub="early", version=5)
    first.connect()
    first.publish("aud/early/x", b"x", 1)  # a decision to write: the write fails
    assert gw.gateway is not None
    gw.gateway.audit_pipeline.flush()
    assert gw.gateway.audit_pipeline.log_failing
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r,
    ):
        assert "mqttgate_audit_log_failing 1" in await r.text()
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/readyz") as r,
    ):
        body = await r.json()
        assert body["checks"]["audit_log"] == "failing"
        assert r.status == (503 if mode == "fail_closed" else 200)
    late = gw.client(sub="late", version=5)
    if mode == "fail_closed":
        with pytest.raises(Exception, match="handshake"):
            late.connect(expect_ok=False)
        late.c.loop_stop()
    else:
        late.connect()
        late.disconnect()
    first.disconnect()
