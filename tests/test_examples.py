"""What the README tells a new user to run works: the sample policy and the example client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.acl import load_policy
from gateway.identity import Identity
from tests.conftest import GatewayFactory

ROOT = Path(__file__).resolve().parents[1]


def test_sample_policy() -> None:
    policy = load_policy(ROOT / "config" / "policy.json")
    alice = Identity.from_values({"user_id": "alice", "email": "alice@example.com"})
    assert policy.authorize_subscribe(alice, "users/alice/inbox", 1).allowed
    assert policy.authorize_publish(alice, "users/alice/inbox", 1, False).allowed
    assert not policy.authorize_subscribe(alice, "users/bob/inbox", 1).allowed
    assert not policy.authorize_subscribe(alice, "users/+/inbox", 1).allowed
    assert policy.authorize_subscribe(alice, "public/news", 0).allowed
    assert not policy.authorize_publish(alice, "public/news", 0, False).allowed
    admin = Identity.from_values({"user_id": "root", "role": "admin"})
    assert policy.authorize_publish(admin, "public/news", 1, True).allowed


def run_example(port: int, certs: Path, token: str, topic: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "wss_client.py"),
            "--port",
            str(port),
            "--ca",
            str(certs / "ca.pem"),
            "--token",
            token,
            "--topic",
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_client(gateway_factory: GatewayFactory, certs: Path) -> None:
    gw = gateway_factory(policy=(ROOT / "config" / "policy.json").read_text())
    token = gw.idp.token("alice", email="alice@example.com")
    ok = run_example(gw.port, certs, token, "users/alice/inbox")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MESSAGE: b'hello from examples/wss_client.py'" in ok.stdout
    refused = run_example(gw.port, certs, token, "users/bob/inbox")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "no message came back" in refused.stdout
