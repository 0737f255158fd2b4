"""Two `mqttgate serve` processes, one Mosquitto: `mqttgate acl publish` reaches both."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from gateway.certs import make_dev_certs
from gateway.fleet.envelope import write_key_pair
from tests.support.gateway_thread import write_config
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto, free_port, wait_port


def policy(topic: str) -> str:
    return json.dumps(
        {
            "version": "2.0",
            "default_action": "deny",
            "rules": [{"id": "r", "topic": topic, "action": "all", "effect": "allow"}],
        }
    )


def readyz(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        return json.loads(e.read())  # type: ignore[no-any-return]


def test_signed_update_reaches_two_processes(
    tmp_path: Path, broker: Mosquitto, idp: DevIdp
) -> None:
    certs = tmp_path / "certs"
    make_dev_certs(certs)
    private, public = write_key_pair(tmp_path / "keys")
    topic = f"$mqttgate/policy-{uuid.uuid4().hex[:8]}"
    procs, admins = [], []
    for i in range(2):
        pol = tmp_path / f"policy{i}.json"
        pol.write_text(policy("old/#"))
        admin = free_port()
        cfg = write_config(
            tmp_path / f"g{i}.toml",
            certs=certs,
            upstream_port=broker.port,
            extra=idp.auth_toml() + f'\n[acl]\npolicy = "{pol}"\n'
            f'[fleet]\nenabled = true\ncontrol_topic = "{topic}"\n'
            f'public_key_files = ["{public}"]\ninstance = "p{i}"\n',
        )
        cfg.write_text(
            cfg.read_text().replace(
                '[admin]\nhost = "127.0.0.1"\nport = 0',
                f'[admin]\nhost = "127.0.0.1"\nport = {admin}',
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--workers", "1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        admins.append(admin)
    try:
        for a in admins:
            wait_port("127.0.0.1", a, 20)
        new = tmp_path / "new.json"
        new.write_text(policy("new/#"))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "acl",
                "publish",
                str(new),
                "--broker",
                f"mqtt://127.0.0.1:{broker.port}",
                "--signing-key",
                str(private),
                "--topic",
                topic,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fleets = [readyz(a)["checks"]["fleet"] for a in admins]  # type: ignore[index]
            if all(f["active_version"] and f["applied"] for f in fleets):  # type: ignore[index]
                break
            time.sleep(0.1)
        versions = {f["active_version"] for f in fleets}  # type: ignore[index]
        assert len(versions) == 1 and None not in versions, fleets
        policies = {readyz(a)["checks"]["policy_version"] for a in admins}  # type: ignore[index]
        assert policies == versions
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(15)
