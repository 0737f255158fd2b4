"""``mqttgate serve --workers 2``: one port, two processes, one admin view, one policy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.client import HTTPConnection
from pathlib import Path

import pytest

from gateway.certs import make_dev_certs
from tests.support.gateway_thread import write_config
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto, free_port, wait_port
from tests.support.paho import Client
from tests.support.spy import BrokerSpy

ADMIN_TOKEN = "workers-admin-" + uuid.uuid4().hex
POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [{"id": "w", "topic": "wk/#", "action": "all", "effect": "allow"}],
}


def free_port_pair() -> int:
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
            return base
    raise RuntimeError("no free port pair")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


class DecisionStreamReader(threading.Thread):
    """Reads the leader's /admin/decisions/stream (server-sent events) in the background."""

    def __init__(self, port: int, query: str) -> None:
        super().__init__(daemon=True)
        self.conn = HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request(
            "GET",
            f"/admin/decisions/stream?{query}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.hello: dict[str, object] = {}
        self.decisions: list[dict[str, object]] = []
        self.said_hello = threading.Event()

    def run(self) -> None:
        event = ""
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "hello":
                    self.hello = json.loads(line[6:])
                    self.said_hello.set()
                elif line.startswith("data: ") and event == "decision":
                    self.decisions.append(json.loads(line[6:]))
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """End the stream: the reader sees the end of the socket, then the connection goes."""
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(10)
        self.conn.close()


def worker_pid(supervisor: int, index: int) -> int:
    """The pid of the supervisor's worker ``index`` (its MQTTGATE_WORKER_INDEX)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    for child in map(int, children):
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"MQTTGATE_WORKER_INDEX={index}".encode() in environ:
            return child
    raise LookupError(f"no worker {index} under {supervisor}")


def test_two_workers(tmp_path: Path, broker: Mosquitto, idp: DevIdp) -> None:
    certs = tmp_path / "certs"
    make_dev_certs(certs)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    port, admin = free_port(), free_port_pair()
    cfg = write_config(
        tmp_path / "g.toml",
        certs=certs,
        upstream_port=broker.port,
        admin='token_env = "MQTTGATE_TEST_WORKERS_TOKEN"',
        # No file watch in the window of this test: the leader's request alone must
        # bring the other worker to the new policy.
        extra=idp.auth_toml() + f'\n[acl]\npolicy = "{policy}"\nwatch_interval_s = 3600\n',
    )
    text = cfg.read_text().replace("port = 0\ncertfile", f"port = {port}\ncertfile", 1)
    text = text.replace(
        '[admin]\nhost = "127.0.0.1"\nport = 0', f'[admin]\nhost = "127.0.0.1"\nport = {admin}'
    )
    cfg.write_text(text)
    env = {**os.environ, "MQTTGATE_TEST_WORKERS_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    clients: list[Client] = []
    try:
        wait_port("127.0.0.1", port, 60)  # a loaded CI machine starts processes slowly
        wait_port("127.0.0.1", admin, 60)
        wait_port("127.0.0.1", admin + 1, 60)
        for i in range(16):
            c = Client(port, certs / "ca.pem", client_id=f"w{i}", password=idp.token(f"u{i}"))
            c.connect()
            c.subscribe("wk/t", 0)
            clients.append(c)
        status, body = http("GET", f"http://127.0.0.1:{admin}/admin/sessions")
        sessions = json.loads(body)
        assert len(sessions) == 16
        workers = {s["worker"] for s in sessions}
        assert workers <= {0, 1}
        # The leader's live decisions include every worker's.
        stream = DecisionStreamReader(admin, "verdict=deny&kind=publish")
        stream.start()
        try:
            assert stream.said_hello.wait(10)
            assert stream.hello["workers"] == 2
            for c in clients:
                c.publish(f"denied/{c.c._client_id.decode()}", b"x", 0)
            deadline = time.monotonic() + 10
            while len(stream.decisions) < len(clients) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stream.close()
        assert sorted(str(d["client_id"]) for d in stream.decisions) == sorted(
            f"w{i}" for i in range(16)
        )
        assert {(d["client_id"], d["worker"]) for d in stream.decisions} == {
            (s["client_id"], s["worker"]) for s in sessions
        }
        status, metrics = http("GET", f"http://127.0.0.1:{admin}/metrics")
        assert b'worker="0"' in metrics and b'worker="1"' in metrics
        # One policy update through the leader reaches every worker's sessions at once.
        narrowed = {**POLICY, "rules": [{**POLICY["rules"][0], "topic": "other/#"}]}
        status, body = http(
            "PUT", f"http://127.0.0.1:{admin}/admin/policy", json.dumps(narrowed).encode()
        )
        assert status == 200
        answer = json.loads(body)
        # Every worker's revoked subscriptions, and no worker left behind.
        assert answer["revoked_subscriptions"] == 16
        assert "workers_not_updated" not in answer
        with BrokerSpy(broker.port, "$none") as direct:
            direct.publish("wk/t", b"after", 0)
            time.sleep(0.5)
        for c in clients:
            c.expect_none(0.05)
        # A worker that does not answer is named in the answer, not silently left behind.
        stuck = worker_pid(proc.pid, 1)
        os.kill(stuck, signal.SIGSTOP)
        try:
            status, body = http(
                "PUT", f"http://127.0.0.1:{admin}/admin/policy", json.dumps(POLICY).encode()
            )
        finally:
            os.kill(stuck, signal.SIGCONT)
        assert status == 200
        assert json.loads(body)["workers_not_updated"] == [1]
    finally:
        for c in clients:
            c.c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the supervisor did not stop")
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
