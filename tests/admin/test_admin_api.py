"""The admin API: authenticated, validates before it swaps, revokes, rolls back, simulates."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {"id": "own", "topic": "adm/{user_id}/#", "action": "all", "effect": "allow"},
        {"id": "news", "topic": "news/#", "action": "subscribe", "effect": "allow"},
    ],
}


@pytest.fixture
def gw(gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch) -> GatewayThread:
    monkeypatch.setenv("MQTTGATE_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    return gateway_factory(
        policy=json.dumps(POLICY),
        admin='token_env = "MQTTGATE_TEST_ADMIN_TOKEN"\nrole = "ops"\n',
    )


async def call(
    gw: GatewayThread, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"http://127.0.0.1:{gw.admin_port}{path}", headers=headers, **kw) as r,
    ):
        body = await r.read()
        return r.status, (orjson.loads(body) if body else None)


async def test_requires_credentials(gw: GatewayThread) -> None:
    assert (await call(gw, "GET", "/admin/policy", token=None))[0] == 401
    assert (await call(gw, "GET", "/admin/policy", token="wrong"))[0] == 401
    user_token = gw.idp.token("mallory", role="user")
    assert (await call(gw, "GET", "/admin/policy", token=user_token))[0] == 401
    ops_token = gw.idp.token("olga", role=["viewer", "ops"])
    status, body = await call(gw, "GET", "/admin/policy", token=ops_token)
    assert status == 200 and body["policy"] == POLICY
    # Health stays open for probes.
    assert (await call(gw, "GET", "/healthz", token=None))[0] == 200


async def test_disabled_without_configuration(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    status, body = await call(gw, "GET", "/admin/policy")
    assert status == 403 and "disabled" in body["error"]


async def test_invalid_policy_refused_with_location(gw: GatewayThread) -> None:
    before = gw.gateway.policy.version if gw.gateway else None
    bad = (
        '{\n  "version": "2.0",\n  "default_action": "deny",\n  "rules": [\n'
        '    {"id": "x", "topic": "a/#/b", "action": "all", "effect": "allow"}\n  ]\n}\n'
    )
    status, body = await call(gw, "PUT", "/admin/policy", data=bad)
    assert status == 422
    problem = body["problems"][0]
    assert problem["line"] == 5 and problem["pointer"].startswith("/rules/0")
    assert gw.gateway is not None and gw.gateway.policy.version == before


async def test_put_revokes_and_rollback_restores(gw: GatewayThread, broker: Mosquitto) -> None:
    u = "u" + uuid.uuid4().hex[:8]
    c = gw.client(sub=u, version=5)
    c.connect()
    c.subscribe(f"adm/{u}/feed", 1)
    with BrokerSpy(broker.port, "$none") as direct:
        direct.publish(f"adm/{u}/feed", b"one", 1)
        assert c.expect().payload == b"one"
        narrowed = {**POLICY, "rules": [POLICY["rules"][1]]}
        status, body = await call(gw, "PUT", "/admin/policy", data=json.dumps(narrowed))
        assert status == 200, body
        assert body["revoked_subscriptions"] == 1
        assert json.loads(gw.policy_path.read_text()) == narrowed  # persisted
        direct.publish(f"adm/{u}/feed", b"two", 1)
        c.expect_none()
        status, got = await call(gw, "GET", "/admin/policy")
        assert got["version"] == body["version"] and got["previous_version"]
        status, rolled = await call(gw, "POST", "/admin/policy/rollback")
        assert status == 200 and rolled["version"] == got["previous_version"]
        assert json.loads(gw.policy_path.read_text()) == POLICY
    c.disconnect()


async def test_simulate_agrees_with_cli(gw: GatewayThread, tmp_path: Path) -> None:
    policy_file = tmp_path / "p.json"
    policy_file.write_text(json.dumps(POLICY))
    cases = [
        ("subscribe", "adm/alice/x", 1, False),
        ("subscribe", "adm/+/x", 1, False),
        ("publish", "news/today", 0, False),
        ("subscribe", "news/#", 2, False),
    ]
    for action, topic, qos, retain in cases:
        status, api = await call(
            gw,
            "POST",
            "/admin/simulate",
            data=json.dumps(
                {
                    "identity": {"user_id": "alice"},
                    "client_id": "c1",
                    "action": action,
                    "topic": topic,
                    "qos": qos,
                    "retain": retain,
                }
            ),
        )
        assert status == 200, api
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "acl",
                "simulate",
                str(policy_file),
                "--identity",
                '{"user_id": "alice"}',
                "--client-id",
                "c1",
                "--action",
                action,
                "--topic",
                topic,
                "--qos",
                str(qos),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        out = json.loads(cli.stdout)
        for key in ("verdict", "reason", "rule_id", "pattern", "granted_qos", "policy_version"):
            assert api[key] == out[key], (key, topic, api, out)


async def test_sessions_list_and_disconnect(gw: GatewayThread) -> None:
    u = "u" + uuid.uuid4().hex[:8]
    c = gw.client(sub=u, version=5, client_id=f"cid-{u}")
    c.connect()
    c.subscribe(f"adm/{u}/a", 1)
    status, sessions = await call(gw, "GET", "/admin/sessions")
    mine = [s for s in sessions if s["client_id"] == f"cid-{u}"]
    assert len(mine) == 1
    assert mine[0]["identity"]["user_id"] == u
    assert mine[0]["upstream_client_id"] == f"{u}:cid-{u}"
    assert mine[0]["subscriptions"] == [{"filter": f"adm/{u}/a", "qos": 1, "rule_id": "own"}]
    status, _ = await call(gw, "DELETE", f"/admin/sessions/{mine[0]['id']}")
    assert status == 204
    assert c.disconnects.get(timeout=5).value == 0x98
    assert (await call(gw, "DELETE", "/admin/sessions/nope"))[0] == 404


def run_cli(
    gw: GatewayThread, *args: str, token: str = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "MQTTGATE_ADMIN_TOKEN": token}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "acl",
            *args,
            "--gateway",
            f"http://127.0.0.1:{gw.admin_port}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_cli_update_get_rollback(gw: GatewayThread, tmp_path: Path) -> None:
    new = {**POLICY, "rules": [POLICY["rules"][1]]}
    f = tmp_path / "new.json"
    f.write_text(json.dumps(new))
    out = run_cli(gw, "update", str(f))
    assert out.returncode == 0, out.stderr
    assert "active on" in out.stdout
    got = run_cli(gw, "get")
    assert got.returncode == 0 and json.loads(got.stdout) == new
    back = run_cli(gw, "rollback")
    assert back.returncode == 0, back.stderr
    assert json.loads(run_cli(gw, "get").stdout) == POLICY
    # A bad file is refused locally, with its line, before anything is sent.
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"version": "2.0",\n "rules": [{"id": "x", "topic": "a/#/b",\n'
        ' "action": "all", "effect": "allow"}]}'
    )
    refused = run_cli(gw, "update", str(bad))
    assert refused.returncode == 1 and f"{bad}:2" in refused.stderr
    assert json.loads(run_cli(gw, "get").stdout) == POLICY
    # Wrong credentials: a one-line error naming the status.
    denied = run_cli(gw, "get", token="wrong")
    assert denied.returncode == 1 and "401" in denied.stderr
