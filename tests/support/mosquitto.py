"""A real Mosquitto on a free loopback port, with its own config, started and stopped by tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.path.exists(cand):
            return cand
    raise RuntimeError("mosquitto is not installed (bash .ci/setup.sh installs it)")


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


@dataclass
class Mosquitto:
    """A running broker. ``port`` is its MQTT/TCP listener on 127.0.0.1."""

    workdir: Path
    port: int = field(default_factory=free_port)
    ws_port: int | None = None
    extra: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def config_text(self) -> str:
        lines = [
            "user root",  # tests run as root in CI; stay root so tmp files stay readable
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "allow_anonymous true",
            "max_queued_messages 100000",
            f"listener {self.port} 127.0.0.1",
            "protocol mqtt",
        ]
        if self.ws_port is not None:
            # Debian's 2.0.11 ignores the address of websockets listeners: bind by
            # interface name instead (shared/notes/mosquitto-2.0.11.md).
            lines += [f"listener {self.ws_port} lo", "protocol websockets"]
        return "\n".join(lines) + "\n" + self.extra

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
