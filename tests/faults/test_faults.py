"""Broken neighbours (issue 9, item 4): the broker restarting mid-traffic, the IdP down, the
OTLP collector down, a corrupted policy file on reload. Each with the real component
stopped or broken, not simulated."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connack, Connect, Puback, Publish
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import JwksServer, auth_toml, random_kid
from tests.security.conftest import Attacker
from tests.security.test_handshake import RawWebSocket
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto, free_port

POLICY = orjson.dumps(
    {
        "version": "2.0",
        "default_action": "deny",
        "rules": [{"id": "own", "topic": "f/{user_id}/#", "action": "all", "effect": "allow"}],
    }
).decode()


def user() -> str:
    return "u" + uuid.uuid4().hex[:8]


async def readyz(gw: GatewayThread) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/readyz") as r,
    ):
        return r.status, await r.json()


async def metrics(gw: GatewayThread) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r,
    ):
        return await r.text()


async def connect(gw: GatewayThread, w: Attacker, sub: str, token: str | None = None) -> Connack:
    got = await w.connect(
        Connect("c-" + sub, protocol_level=5, password=(token or gw.idp.token(sub)).encode())
    )
    assert isinstance(got, Connack)
    return got


OK, REFUSED = "ok", 0x87


async def published(w: Attacker, topic: str, pid: int) -> int | str:
    """OK for a success PUBACK (0x00, or 0x10 No matching subscribers), else its code."""
    await w.send(Publish(topic, b"x", 1, packet_id=pid))
    ack = await w.recv()
    assert isinstance(ack, Puback) and ack.packet_id == pid
    return OK if ack.reason_code < 0x80 else ack.reason_code


async def test_broker_restart_mid_traffic(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "restart").start()
    try:
        gw = gateway_factory(upstream_port=broker.port, policy=POLICY)
        u = user()
        async with Attacker(gw, level=5) as w:
            assert (await connect(gw, w, u)).reason_code == 0
            assert await published(w, f"f/{u}/a", 1) == OK
            broker.stop()
            # The client is told (v5 DISCONNECT 0x80: the broker gave no reason) and
            # disconnected cleanly: a WebSocket close frame with 1000, not a hang or reset.
            assert w.ws is not None
            msg = await asyncio.wait_for(w.ws.receive(), 5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, b"\xe0\x01\x80")
            msg = await asyncio.wait_for(w.ws.receive(), 5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1000)
        status, body = await readyz(gw)
        assert status == 503 and body["checks"]["upstream"] == "unreachable"  # type: ignore[index]
        async with Attacker(gw, level=5) as w:
            assert (await connect(gw, w, u)).reason_code == 0x88  # Server unavailable
        broker.start()  # the same port
        status, body = await readyz(gw)
        assert status == 200 and body["checks"]["upstream"] == "ok"  # type: ignore[index]
        async with Attacker(gw, level=5) as w:  # the client reconnects
            assert (await connect(gw, w, u)).reason_code == 0
            assert await published(w, f"f/{u}/b", 2) == OK
    finally:
        broker.stop()


async def test_broker_loss_closes_the_websocket_with_a_handshake(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """RFC 6455 section 7.1.2: after the gateway's close frame it waits for the client's
    answer before dropping TCP, so the client's own close frame is not met by a reset
    (which a client reports as 1006, abnormal closure)."""
    broker = Mosquitto(tmp_path / "handshake").start()
    try:
        gw = gateway_factory(upstream_port=broker.port, policy=POLICY)
        ws, status, _ = await RawWebSocket.open(gw)
        assert status == 101
        u = user()
        connect = Connect(
            "c-" + u, protocol_level=4, username="jwt", password=gw.idp.token(u).encode()
        )
        ws.frame(0x2, encode(connect, 4))
        assert await ws.read_frame() == (0x2, b"\x20\x02\x00\x00")  # CONNACK accepted
        broker.stop()
        assert await ws.close_code() == 1000
        # The gateway holds the connection open for the answer...
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.reader.read(1), 0.5)
        ws.frame(0x8, struct.pack("!H", 1000))
        # ...and closes it once the answer is in.
        assert await asyncio.wait_for(ws.reader.read(1), 5) == b""
        ws.close()
    finally:
        broker.stop()


@pytest.fixture
def jwks() -> JwksServer:
    server = JwksServer().start()
    yield server  # type: ignore[misc]
    server.stop()


async def test_idp_down_last_good_keys_serve(
    gateway_factory: GatewayFactory, jwks: JwksServer
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.publish((key, "k1"))
    gw = gateway_factory(auth=auth_toml(jwks.issuer_toml()), policy=POLICY)
    u = user()
    async with Attacker(gw, level=5) as w:
        assert (await connect(gw, w, u, jwks.token(key, "k1", sub=u))).reason_code == 0
    jwks.down = True
    hits = jwks.hits
    # An unknown kid makes the gateway refetch, which fails: the set goes stale...
    async with Attacker(gw, level=5) as w:
        other = ec.generate_private_key(ec.SECP256R1())
        assert (await connect(gw, w, u, jwks.token(other, random_kid(), sub=u))).reason_code == 0x86
    assert jwks.hits > hits
    _, body = await readyz(gw)
    assert jwks.issuer in body["checks"]["auth"]["stale"]  # type: ignore[index]
    # ...and the last good keys keep serving.
    async with Attacker(gw, level=5) as w:
        assert (await connect(gw, w, u, jwks.token(key, "k1", sub=u))).reason_code == 0
        assert await published(w, f"f/{u}/a", 1) == OK


def otlp_down_gateway(
    gateway_factory: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GatewayThread:
    dead = free_port()  # nothing listens there
    # The exporter's own deadline (OTLP spec default 10 s), short so that shutdown is quick.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    return gateway_factory(
        policy=POLICY,
        extra=f"""
[audit]
log_file = "{tmp_path / "audit.jsonl"}"
otlp_endpoint = "http://127.0.0.1:{dead}"
otlp_protocol = "http/protobuf"
allow_sample_ratio = 1.0
""",
    )


async def test_otlp_collector_down_data_path_and_log_unaffected(
    gateway_factory: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = otlp_down_gateway(gateway_factory, tmp_path, monkeypatch)
    u = user()
    started = time.monotonic()
    async with Attacker(gw, level=5) as w:
        assert (await connect(gw, w, u)).reason_code == 0
        for i in range(1, 51):
            topic = f"f/{u}/{i}" if i % 2 else f"other/{u}/{i}"
            assert await published(w, topic, i) == (OK if i % 2 else REFUSED)
    # 50 decisions with a dead collector: no exporter timeout on the data path.
    assert time.monotonic() - started < 3.0
    log = tmp_path / "audit.jsonl"
    decisions: list[dict[str, object]] = []
    deadline = time.monotonic() + 5.0
    while len(decisions) < 50 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        lines = [orjson.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        decisions = [x for x in lines if x.get("action") == "publish" and u in str(x["topic"])]
    assert len(decisions) == 50
    assert sum(1 for x in decisions if x["verdict"] == "deny") == 25


async def test_otlp_collector_down_dropped_spans_are_counted(
    gateway_factory: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = otlp_down_gateway(gateway_factory, tmp_path, monkeypatch)
    u = user()
    async with Attacker(gw, level=5) as w:
        assert (await connect(gw, w, u)).reason_code == 0
        for i in range(1, 11):
            await published(w, f"other/{u}/{i}", i)
    assert gw.gateway is not None
    gw.gateway.audit_pipeline.flush(timeout=2.0)
    text = await metrics(gw)
    counted = [
        line
        for line in text.splitlines()
        if not line.startswith("#") and "span" in line and ("drop" in line or "fail" in line)
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 10, text[-2000:]


async def corrupt_and_wait(gw: GatewayThread) -> None:
    gw.policy_path.write_text('{"version": "2.0", "rules": [ this is not json')
    await asyncio.sleep(0.8)  # watch_interval_s = 0.2 in the test config


async def test_policy_file_corrupted_on_reload_keeps_the_active_policy(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = gateway_factory(policy=POLICY)
    _, before = await readyz(gw)
    u = user()
    with caplog.at_level(logging.ERROR):
        await corrupt_and_wait(gw)
    assert any("policy reload failed" in r.getMessage() for r in caplog.records)
    _, after = await readyz(gw)
    assert after["checks"]["policy_version"] == before["checks"]["policy_version"]  # type: ignore[index]
    async with Attacker(gw, level=5) as w:
        assert (await connect(gw, w, u)).reason_code == 0
        assert await published(w, f"f/{u}/a", 1) == OK
        assert await published(w, f"other/{u}", 2) == REFUSED


async def test_policy_file_corrupted_on_reload_is_audited(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory(policy=POLICY, extra=f'[audit]\nlog_file = "{tmp_path / "a.jsonl"}"\n')
    await corrupt_and_wait(gw)
    assert gw.gateway is not None
    gw.gateway.audit_pipeline.flush(timeout=2.0)
    text = (tmp_path / "a.jsonl").read_text() if (tmp_path / "a.jsonl").exists() else ""
    assert "policy" in text and ("reload" in text or "invalid" in text), text[-2000:]
