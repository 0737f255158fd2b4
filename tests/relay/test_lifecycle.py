"""``mqttgate serve`` as a process: signals, certificate reload, start-up errors."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.certs import make_dev_certs
from tests.support.gateway_thread import write_config
from tests.support.idp import PERMIT_ALL_POLICY, DevIdp
from tests.support.mosquitto import Mosquitto, free_port, wait_port
from tests.support.paho import Client

MQTTGATE = [sys.executable, "-m", "gateway"]


class ServeProcess:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*MQTTGATE, "serve", "--config", str(config), "--log-level", "debug"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def served(
    tmp_path: Path, broker: Mosquitto, idp: DevIdp
) -> Iterator[tuple[ServeProcess, int, Path]]:
    certs = tmp_path / "certs"
    make_dev_certs(certs)
    policy = tmp_path / "policy.json"
    policy.write_text(PERMIT_ALL_POLICY)
    port = free_port()
    cfg = write_config(
        tmp_path / "gateway.toml",
        certs=certs,
        upstream_port=broker.port,
        extra=idp.auth_toml() + f'\n[acl]\npolicy = "{policy}"\n',
    )
    text = cfg.read_text().replace("port = 0\ncertfile", f"port = {port}\ncertfile", 1)
    cfg.write_text(text)
    proc = ServeProcess(cfg)
    try:
        wait_port("127.0.0.1", port, timeout=20)
    except TimeoutError:
        code, err = proc.stop()
        raise AssertionError(f"mqttgate serve did not start ({code}): {err[-2000:]}") from None
    yield proc, port, certs
    proc.stop()


def test_sigterm_sends_v5_server_shutting_down(
    served: tuple[ServeProcess, int, Path], idp: DevIdp
) -> None:
    proc, port, certs = served
    c = Client(port, certs / "ca.pem", version=5, password=idp.token("u-term"))
    c.connect()
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    rc = c.disconnects.get(timeout=10)
    assert rc.value == 0x8B, rc
    code = proc.proc.wait(timeout=10)  # exits by itself after the drain
    _, err = proc.stop()
    assert code == 0, err[-2000:]
    assert time.monotonic() - started < 10
    assert '"msg":"shutting down"' in err


def test_sighup_reloads_certificate_without_dropping(
    served: tuple[ServeProcess, int, Path], idp: DevIdp, tmp_path: Path
) -> None:
    proc, port, certs = served
    old_ca = tmp_path / "old-ca.pem"
    shutil.copy(certs / "ca.pem", old_ca)
    t = f"hup/{os.getpid()}"
    live = Client(port, old_ca, version=4, password=idp.token("u-hup"))
    live.connect()
    live.subscribe(f"{t}/#", 1)
    make_dev_certs(certs)  # a new CA and server certificate, in place
    proc.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:  # new handshakes present the new certificate
        fresh = Client(port, certs / "ca.pem", version=4, password=idp.token("u-hup2"))
        try:
            fresh.connect()
            break
        except Exception:
            fresh.c.loop_stop()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    fresh.publish(f"{t}/x", b"after-reload", 1)
    assert live.expect().payload == b"after-reload"  # the old connection is still up
    stale = Client(port, old_ca, version=4, password=idp.token("u-hup3"))
    with pytest.raises(ssl.SSLCertVerificationError):  # the old CA no longer verifies it
        stale.connect()
    stale.c.loop_stop()
    live.disconnect()
    fresh.disconnect()


def test_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[listener]\nport = 'eighty'\n")
    out = subprocess.run(
        [*MQTTGATE, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "listener.port" in lines[0] and str(cfg) in lines[0]


def test_missing_policy_exits_with_one_line(tmp_path: Path, certs: Path, idp: DevIdp) -> None:
    cfg = write_config(
        tmp_path / "g.toml",
        certs=certs,
        upstream_port=1,
        extra=idp.auth_toml() + f'\n[acl]\npolicy = "{tmp_path / "nope.json"}"\n',
    )
    out = subprocess.run(
        [*MQTTGATE, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json" in lines[0], out.stderr


def test_version() -> None:
    from gateway import __version__

    out = subprocess.run([*MQTTGATE, "--version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == f"mqttgate {__version__}"


def test_serve_runs_on_uvloop_when_installed(
    served: tuple[ServeProcess, int, Path], idp: DevIdp
) -> None:
    """``pip install mqttgate[speed]`` (CI installs it): the served gateway runs on
    uvloop, whose transports are not asyncio's classes, and relays both ways."""
    pytest.importorskip("uvloop", reason="uvloop not installed (the mqttgate[speed] extra)")
    proc, port, certs = served
    sub = Client(port, certs / "ca.pem", version=5, password=idp.token("u-uv"))
    pub = Client(port, certs / "ca.pem", version=4, password=idp.token("u-uv2"))
    sub.connect()
    pub.connect()
    sub.subscribe("uv/x", 1)
    for i in range(20):
        pub.publish("uv/x", f"m{i}".encode(), i % 2)
    assert [sub.expect().payload for _ in range(20)] == [f"m{i}".encode() for i in range(20)]
    sub.disconnect()
    pub.disconnect()
    code, err = proc.stop()
    assert code == 0
    assert '"using uvloop"' in err
