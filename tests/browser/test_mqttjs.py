"""MQTT.js in headless Chromium against the gateway over wss (issue 8, item 1).

A page on a loopback origin connects as MQTT 3.1.1 and 5 with a token of the test issuer,
in the CONNECT password or in the ``access_token`` query parameter, and sees exactly what
the policy says: SUBACK codes, PUBACK 0x87, delivery; a foreign origin is refused before
the upgrade; MQTT 5 re-authentication keeps a session past its first token's expiry.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.browser.browser import Page
from tests.browser.conftest import AdminGateway, PageUnderTest
from tests.browser.static_server import StaticServer
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [
        {"id": "own", "topic": "web/{user_id}/#", "action": "all", "effect": "allow",
         "qos": [0, 1]},
        {"id": "news", "topic": "webnews/#", "action": "subscribe", "effect": "allow"},
    ],
}  # fmt: skip

SUBACK_FAILURE_V311 = 0x80  # MQTT 3.1.1 §3.9.3
NOT_AUTHORIZED = 0x87  # MQTT 5.0 §2.4, in SUBACK and PUBACK
MAXIMUM_CONNECT_TIME = 0xA0  # MQTT 5.0 §3.14.2.1: the token expired
AUTH_SUCCESS = 0x00  # MQTT 5.0 §3.15.2.1


def user() -> str:
    return "w" + uuid.uuid4().hex[:10]


def open_test_page(page: Page, server: StaticServer) -> None:
    assert page.goto(f"{server.origin}/mqtt.html")["status"] == 200
    page.wait_for("typeof window.mqttPage === 'object' && typeof mqtt === 'object'")


def mqtt_url(gw: GatewayThread, token: str | None = None) -> str:
    url = f"wss://localhost:{gw.port}/mqtt"
    return f"{url}?access_token={token}" if token else url


def connect_options(version: int, u: str, token: str | None, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"protocolVersion": version, "clientId": f"web-{u}", **extra}
    if token is not None:
        # MQTT 3.1.1 §3.1.2.9: a password needs a user name; the gateway ignores it.
        options.update(username="jwt", password=token)
    return options


@pytest.mark.parametrize("carrier", ["password", "query"])
@pytest.mark.parametrize("version", [4, 5])
def test_allowed_and_refused_as_the_policy_says(
    admin_gateway: AdminGateway,
    static_server: StaticServer,
    page: Page,
    broker: Mosquitto,
    version: int,
    carrier: str,
) -> None:
    gw = admin_gateway(POLICY)
    u = user()
    token = gw.idp.token(u)
    open_test_page(page, static_server)
    url = mqtt_url(gw, token if carrier == "query" else None)
    options = connect_options(version, u, token if carrier == "password" else None)
    connack = page.call("mqttPage.connect", "c", url, options)
    assert connack["returnCode" if version == 4 else "reasonCode"] in (0, None), connack

    refused_code = SUBACK_FAILURE_V311 if version == 4 else NOT_AUTHORIZED
    suback = page.call(
        "mqttPage.subscribe",
        "c",
        [{"topic": f"web/{u}/inbox", "qos": 1}, {"topic": f"web/other-{u}/inbox", "qos": 1}],
    )
    assert suback["codes"] == [1, refused_code], suback

    with BrokerSpy(broker.port, f"web/other-{u}/#") as spy:
        sent = page.call("mqttPage.publish", "c", f"web/{u}/inbox", "hello", 1, False)
        assert sent == {"error": None, "code": 0}
        got = page.wait_for(f"mqttPage.seen('c').messages.find(m => m.topic === 'web/{u}/inbox')")
        assert got == {"topic": f"web/{u}/inbox", "payload": "hello", "qos": 1}

        refused = page.call("mqttPage.publish", "c", f"web/other-{u}/inbox", "nope", 1, False)
        if version == 5:
            assert refused["code"] == NOT_AUTHORIZED and "Not authorized" in refused["error"]
        else:
            # MQTT 3.1.1 has no PUBACK reason: the gateway acknowledges and drops.
            assert refused == {"error": None, "code": 0}
        assert spy.topics() == []  # nothing refused reached the broker
    assert page.call("mqttPage.connected", "c") is True
    page.call("mqttPage.end", "c")


def test_foreign_origin_refused_before_the_upgrade(
    admin_gateway: AdminGateway,
    static_server: StaticServer,
    foreign_server: StaticServer,
    tab: PageUnderTest,
) -> None:
    gw = admin_gateway(POLICY)
    u = user()
    token = gw.idp.token(u)
    page = tab.page
    tab.expect_console_error(r"WebSocket connection to .* failed.*403")
    open_test_page(page, foreign_server)
    failed = page.eval(
        f"mqttPage.connect('c', {mqtt_url(gw)!r}, {connect_options(5, u, token)!r})"
        ".then(() => 'connected', (e) => e)"
    )
    assert failed != "connected"
    handshakes = [m["text"] for m in page.console() if "WebSocket" in m["text"]]
    assert any("403" in text for text in handshakes), handshakes

    # The same token from the listed origin is let in: the origin alone made the difference.
    open_test_page(page, static_server)
    assert page.call("mqttPage.connect", "c", mqtt_url(gw), connect_options(5, u, token))
    page.call("mqttPage.end", "c")


def test_reauthentication_keeps_the_session_alive(
    admin_gateway: AdminGateway, static_server: StaticServer, page: Page, idp: DevIdp
) -> None:
    # Leeway 0: a session ends at its token's exp (plus the leeway otherwise).
    gw = admin_gateway(
        POLICY, auth=idp.auth_toml().replace("[auth]\n", "[auth]\nleeway_s = 0\n", 1)
    )
    u = user()
    first = gw.idp.token(u, ttl_s=4)
    expires = time.time() + 4
    open_test_page(page, static_server)
    v5 = {"properties": {"authenticationMethod": "jwt"}}
    page.call("mqttPage.connect", "renewed", mqtt_url(gw), connect_options(5, u, first, **v5))
    other = {**connect_options(5, u, first, **v5), "clientId": f"web-{u}-b"}
    page.call("mqttPage.connect", "lapsing", mqtt_url(gw), other)
    suback = page.call("mqttPage.subscribe", "renewed", [{"topic": f"web/{u}/#", "qos": 1}])
    assert suback["codes"] == [1]

    page.call("mqttPage.reauthenticate", "renewed", gw.idp.token(u, ttl_s=300))
    page.wait_for(f"mqttPage.seen('renewed').auth.includes({AUTH_SUCCESS})", timeout=3)

    time.sleep(max(0.0, expires - time.time()) + 1.5)
    # The client that did not renew was told its connect time is over ...
    lapsed = page.wait_for("mqttPage.seen('lapsing').disconnects.length > 0 "
                           "&& mqttPage.seen('lapsing').disconnects")  # fmt: skip
    assert lapsed == [MAXIMUM_CONNECT_TIME]
    # ... the renewed one still publishes and receives.
    assert page.call("mqttPage.connected", "renewed") is True
    sent = page.call("mqttPage.publish", "renewed", f"web/{u}/after", "still here", 1, False)
    assert sent["code"] == 0
    page.wait_for(f"mqttPage.seen('renewed').messages.some(m => m.topic === 'web/{u}/after')")
    assert page.call("mqttPage.seen", "renewed")["disconnects"] == []
    page.call("mqttPage.end", "renewed")
