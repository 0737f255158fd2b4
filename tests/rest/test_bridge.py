"""POST /v1/publish: authenticated, authorized and audited as an MQTT PUBLISH would be."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.rest.conftest import Bridge, BridgeFactory, V5Subscriber
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto, free_port


async def post(
    b: Bridge,
    body: Any,
    token: str | None,
    *,
    raw: bytes | None = None,
    ctype: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{b.url}/v1/publish", data=data, headers=headers) as r,
    ):
        payload = await r.read()
        return r.status, orjson.loads(payload) if payload else None, dict(r.headers)


async def test_publish_reaches_the_broker_with_caller_properties(
    bridge_factory: BridgeFactory, broker: Mosquitto, idp: DevIdp
) -> None:
    b = bridge_factory()
    sub = V5Subscriber(broker.port, "rest/alice/#")
    try:
        status, body, _ = await post(
            b,
            {"topic": "rest/alice/inbox", "payload": "hi", "qos": 1, "user_properties": {"k": "v"}},
            idp.token("alice"),
        )
        assert status == 202, body
        msg = sub.get()
        assert (msg.topic, msg.payload, msg.qos) == ("rest/alice/inbox", b"hi", 1)
        props = dict(msg.properties.UserProperty)
        assert props["k"] == "v"
        assert props["mqttgate-message-id"] == body["message_id"]
        assert props["mqttgate-user-id"] == "alice"
        assert props["mqttgate-issuer"] == b.gt.gateway.authenticator.auth.config.issuers[0].issuer  # type: ignore[union-attr]
        assert props["mqttgate-publisher"] == "service:rest_publisher"
        assert props["mqttgate-via"] == "rest"
        # Binary payloads, QoS 0 and 2, retain.
        data = bytes(range(256))
        for qos in (0, 2):
            status, body, _ = await post(
                b,
                {
                    "topic": "rest/alice/bin",
                    "payload_base64": base64.b64encode(data).decode(),
                    "qos": qos,
                },
                idp.token("alice"),
            )
            assert status == 202 and body["qos"] == qos
            assert sub.get().payload == data
    finally:
        sub.close()
    records = [r for r in b.audit() if r["type"] == "decision"]
    [rec] = [r for r in records if r["connection_id"] == f"rest:{props['mqttgate-message-id']}"]
    assert rec["verdict"] == "allow" and rec["action"] == "publish" and rec["user_id"] == "alice"
    assert rec["rule_id"] == "own" and rec["client_id"] == "mqttgate-rest-test0"


async def test_401_without_or_with_a_bad_token(bridge_factory: BridgeFactory, idp: DevIdp) -> None:
    b = bridge_factory()
    status, body, headers = await post(b, {"topic": "rest/alice/x"}, None)
    assert status == 401 and body["reason"] == "missing_token"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await post(b, {"topic": "rest/alice/x"}, "not-a-jwt")
    assert status == 401 and body["reason"] == "invalid_token"
    expired = idp.token("alice", ttl_s=-3600)
    status, body, _ = await post(b, {"topic": "rest/alice/x"}, expired)
    assert status == 401


async def test_403_is_the_mqtt_policy_and_is_audited(
    bridge_factory: BridgeFactory, broker: Mosquitto, idp: DevIdp
) -> None:
    b = bridge_factory()
    sub = V5Subscriber(broker.port, "rest/#")
    try:
        status, body, _ = await post(
            b, {"topic": "rest/bob/inbox", "payload": "x"}, idp.token("alice")
        )
        assert status == 403 and body["reason"] == "default"
        # The control topic is refused whatever the policy says (even for a $ topic the
        # permit-all policy of another gateway would allow).
        status, body, _ = await post(
            b, {"topic": "$mqttgate/policy", "payload": "x"}, idp.token("alice")
        )
        assert status == 403 and body["reason"] == "control_topic"
        assert sub.none()
    finally:
        sub.close()
    denies = [r for r in b.audit() if r["type"] == "decision" and r["verdict"] == "deny"]
    assert {r["reason"] for r in denies} == {"default", "control_topic"}
    assert all(r["connection_id"].startswith("rest:") for r in denies)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"topic": "rest/alice/+"}, "invalid_topic"),
        ({"payload": "x"}, "bad_request"),
        ({"topic": "rest/alice/x", "qos": 3}, "bad_request"),
        ({"topic": "rest/alice/x", "qos": True}, "bad_request"),
        ({"topic": "rest/alice/x", "payload_base64": "!!"}, "bad_request"),
        ({"topic": "rest/alice/x", "payload": "a", "payload_base64": "YQ=="}, "bad_request"),
        ({"topic": "rest/alice/x", "user_properties": {"mqttgate-user-id": "root"}}, "bad_request"),
        ({"topic": "rest/alice/x", "extra": 1}, "bad_request"),
        ([1, 2], "bad_request"),
    ],
)
async def test_400_for_malformed_requests(
    bridge_factory: BridgeFactory, idp: DevIdp, body: Any, reason: str
) -> None:
    b = bridge_factory()
    status, answer, _ = await post(b, body, idp.token("alice"))
    assert status == 400 and answer["reason"] == reason


async def test_413_and_415(bridge_factory: BridgeFactory, idp: DevIdp) -> None:
    b = bridge_factory(max_payload_bytes=1024)
    token = idp.token("alice")
    status, *_ = await post(b, {"topic": "rest/alice/x", "payload": "a" * 1024}, token)
    assert status == 202
    status, *_ = await post(b, {"topic": "rest/alice/x", "payload": "a" * 1025}, token)
    assert status == 413
    big = base64.b64encode(b"a" * 1025).decode()
    status, *_ = await post(b, {"topic": "rest/alice/x", "payload_base64": big}, token)
    assert status == 413
    status, *_ = await post(b, None, token, raw=b"x" * 300_000)
    assert status == 413
    status, *_ = await post(b, {"topic": "rest/alice/x"}, token, ctype="text/plain")
    assert status == 415


async def test_503_when_the_broker_is_unreachable(
    bridge_factory: BridgeFactory, idp: DevIdp
) -> None:
    b = bridge_factory(upstream_port=free_port(), connect_timeout_s=1.0)
    started = time.monotonic()
    status, body, headers = await post(b, {"topic": "rest/alice/x", "qos": 1}, idp.token("alice"))
    assert status == 503 and body["reason"] == "broker_unavailable"
    assert headers["Retry-After"] == "1"
    # Backing off: the next request is refused at once, not after another timeout.
    t = time.monotonic()
    status, _, _ = await post(b, {"topic": "rest/alice/x", "qos": 0}, idp.token("alice"))
    assert status == 503 and time.monotonic() - t < 0.5
    assert time.monotonic() - started < 5


async def test_qos1_waits_for_the_puback_and_reconnects(
    bridge_factory: BridgeFactory, tmp_path: Path, idp: DevIdp
) -> None:
    own = Mosquitto(tmp_path / "mq").start()
    try:
        b = bridge_factory(
            upstream_port=own.port, publish_timeout_s=0.8, reconnect_backoff_s=0.0, pool_size=1
        )
        token = idp.token("alice")
        assert (await post(b, {"topic": "rest/alice/a", "qos": 1}, token))[0] == 202
        assert own.proc is not None
        os.kill(own.proc.pid, signal.SIGSTOP)  # the broker stops answering: no PUBACK
        try:
            t = time.monotonic()
            status, body, _ = await post(b, {"topic": "rest/alice/b", "qos": 1}, token)
            assert status == 503 and time.monotonic() - t >= 0.7
        finally:
            os.kill(own.proc.pid, signal.SIGCONT)
        # The broker restarts: the pooled link reconnects by itself.
        own.stop()
        own.start()
        deadline = time.monotonic() + 10
        while True:
            status, body, _ = await post(b, {"topic": "rest/alice/c", "qos": 1}, token)
            if status == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 202, body
    finally:
        own.stop()


async def test_502_when_the_broker_refuses(
    bridge_factory: BridgeFactory, tmp_path: Path, idp: DevIdp
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite rest/alice/ok/#\n")
    own = Mosquitto(tmp_path / "mq", extra=f"acl_file {acl}\n").start()
    try:
        b = bridge_factory(upstream_port=own.port)
        token = idp.token("alice")
        assert (await post(b, {"topic": "rest/alice/ok/1", "qos": 1}, token))[0] == 202
        status, body, _ = await post(b, {"topic": "rest/alice/no", "qos": 1}, token)
        assert status == 502 and body["reason"] == "0x87", body
    finally:
        own.stop()


async def test_openapi_document(bridge_factory: BridgeFactory) -> None:
    b = bridge_factory()
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]["/v1/publish"]["post"]["responses"]) >= {
        "202",
        "401",
        "403",
        "413",
        "503",
    }
