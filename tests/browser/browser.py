"""Debian's Chromium under playwright-core, driven from pytest through driver.mjs.

The driver answers one JSON line per request; every call has a deadline so that a stuck
browser fails the test instead of hanging the suite.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "web"
DRIVER = Path(__file__).with_name("driver.mjs")
CHROMIUM = Path("/usr/bin/chromium")
# The flags; --user-data-dir is the fresh profile launchPersistentContext gets.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing_platform() -> str | None:
    """What this machine lacks for the browser tests, or None."""
    if not CHROMIUM.exists():
        return "Debian's chromium (/usr/bin/chromium) is not installed: run bash .ci/setup.sh"
    if shutil.which("node") is None:
        return "node is not installed: run bash .ci/setup.sh"
    if not (WEB_DIR / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing (playwright-core, mqtt): run bash .ci/setup.sh"
    return None


def spki_sha256(cert_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)), what --ignore-certificate-errors-spki-list takes."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, profile: Path, *, trust_spki: str, log: Path) -> None:
        options = {
            "executablePath": str(CHROMIUM),
            "userDataDir": str(profile),
            "args": [*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={trust_spki}"],
        }
        self._log = log.open("w")
        node = shutil.which("node")
        assert node is not None, missing_platform()
        self._proc = subprocess.Popen(
            [node, str(DRIVER), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=WEB_DIR,
            env={**os.environ, "MQTTGATE_WEB_DIR": str(WEB_DIR)},
            text=True,
        )
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next = 0
        self.version = self._answer(0, 30.0)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)

    def _answer(self, want: int, timeout: float) -> Any:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"the browser driver did not answer within {timeout} s") from None
        if answer is None:
            raise BrowserError(f"the browser driver exited; see {self._log.name}")
        assert answer["id"] == want, answer
        if not answer["ok"]:
            raise BrowserError(answer["error"])
        return answer["value"]

    def call(self, op: str, timeout: float = 20.0, **kw: Any) -> Any:
        self._next += 1
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **kw}) + "\n")
        self._proc.stdin.flush()
        return self._answer(self._next, timeout)

    def new_page(self) -> Page:
        return Page(self, self.call("newPage"))

    def close(self) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self._proc.stdin.close()
            self._proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait(5)
        self._log.close()


class Page:
    def __init__(self, browser: Browser, page_id: int) -> None:
        self.browser = browser
        self.id = page_id

    def _call(self, op: str, timeout: float = 20.0, **kw: Any) -> Any:
        return self.browser.call(op, timeout=timeout, page=self.id, **kw)

    def goto(self, url: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("goto", url=url)
        return result

    def eval(self, expression: str) -> Any:
        """A JavaScript expression in the page (promises are awaited)."""
        return self._call("evaluate", expression=expression)

    def call(self, function: str, *args: Any, timeout: float = 20.0) -> Any:
        """``function(...args)`` in the page, arguments passed as JSON."""
        rendered = ", ".join(json.dumps(a) for a in args)
        return self._call("evaluate", timeout=timeout, expression=f"{function}({rendered})")

    def wait_for(self, expression: str, timeout: float = 5.0) -> Any:
        return self._call(
            "waitFor", timeout=timeout + 10, expression=expression, timeoutMs=timeout * 1000
        )

    def fill(self, selector: str, value: str) -> None:
        self._call("fill", selector=selector, value=value)

    def click(self, selector: str) -> None:
        self._call("click", selector=selector)

    def select(self, selector: str, value: str) -> None:
        self._call("select", selector=selector, value=value)

    def submit(self, selector: str) -> str:
        url: str = self._call("submit", selector=selector)
        return url

    def text(self, selector: str) -> str:
        value: str = self._call("text", selector=selector)
        return value

    def download(self, selector: str, target: Path) -> str:
        name: str = self._call("download", selector=selector, path=str(target))
        return name

    def upload(self, selector: str, source: Path) -> None:
        self._call("upload", selector=selector, path=str(source))

    def screenshot(self, target: Path) -> Path:
        self._call("screenshot", path=str(target))
        return target

    def console(self) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = self._call("console")
        return messages

    def close(self) -> None:
        self._call("closePage")
