"""Fixtures of the browser tests: one Chromium for the session, a page per test that
fails the test on any console error, the static page server, an admin-enabled gateway."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.browser import Browser, Page, missing_platform, spki_sha256
from tests.browser.static_server import StaticServer
from tests.conftest import GatewayFactory
from tests.support.gateway_thread import GatewayThread

ADMIN_TOKEN = "browser-admin-token-" + uuid.uuid4().hex
ADMIN_TOKEN_ENV = "MQTTGATE_TEST_BROWSER_ADMIN_TOKEN"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Browser]:
    missing = missing_platform()
    if missing is not None:
        pytest.skip(missing)
    work = tmp_path_factory.mktemp("chromium")
    b = Browser(work / "profile", trust_spki=spki_sha256(certs / "server.pem"),
                log=work / "driver.log")  # fmt: skip
    yield b
    b.close()


class PageUnderTest:
    """A fresh tab; console errors fail the test unless a pattern expects them."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.expected: list[re.Pattern[str]] = []

    def expect_console_error(self, pattern: str) -> None:
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[dict[str, str]]:
        return [
            m
            for m in self.page.console()
            if m["type"] in ("error", "pageerror")
            and not any(p.search(m["text"]) for p in self.expected)
        ]


@pytest.fixture
def tab(browser: Browser) -> Iterator[PageUnderTest]:
    t = PageUnderTest(browser.new_page())
    yield t
    errors = t.unexpected()
    t.page.close()
    assert not errors, f"console errors in the page: {errors}"


@pytest.fixture
def page(tab: PageUnderTest) -> Page:
    return tab.page


@pytest.fixture(scope="session")
def static_server() -> Iterator[StaticServer]:
    s = StaticServer().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def foreign_server() -> Iterator[StaticServer]:
    """The same pages on an origin the gateway does not list."""
    s = StaticServer().start()
    yield s
    s.stop()


AdminGateway = Callable[..., GatewayThread]


@pytest.fixture
def admin_gateway(
    gateway_factory: GatewayFactory, static_server: StaticServer, monkeypatch: pytest.MonkeyPatch
) -> AdminGateway:
    """A gateway whose admin API takes ADMIN_TOKEN and whose listener allows the test page."""
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN_TOKEN)

    def make(policy: dict[str, object], **kw: str) -> GatewayThread:
        return gateway_factory(
            policy=json.dumps(policy, indent=2),
            admin=f'token_env = "{ADMIN_TOKEN_ENV}"\nrole = "ops"\n',
            listener_extra=f'allowed_origins = ["{static_server.origin}"]',
            **kw,
        )

    return make


def sign_in(page: Page, gw: GatewayThread, target: str, token: str = ADMIN_TOKEN) -> str:
    """Through the login form, as a person would; returns the URL the form lands on."""
    base = f"http://127.0.0.1:{gw.admin_port}"
    landed = page.goto(f"{base}{target}")
    assert "/admin/ui/login" in landed["url"], landed
    page.fill("#token", token)
    return page.submit("#submit")
