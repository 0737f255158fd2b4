"""The admin pages' routes over plain HTTP (no browser needed): credentials, the cookie,
cross-origin refusal, the validate endpoint's lines, the stream's filters and framing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
import pytest

from gateway.server.admin_pages import COOKIE, DecisionFilter, sse_event
from tests.browser.conftest import ADMIN_TOKEN, AdminGateway
from tests.support.gateway_thread import GatewayThread

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [{"id": "own", "topic": "pg/{user_id}/#", "action": "all", "effect": "allow"}],
}


def base(gw: GatewayThread) -> str:
    return f"http://127.0.0.1:{gw.admin_port}"


async def login(s: aiohttp.ClientSession, gw: GatewayThread, token: str) -> aiohttp.ClientResponse:
    async with s.post(
        f"{base(gw)}/admin/ui/login?next=/admin/ui/decisions",
        headers={"Origin": base(gw), "Authorization": f"Bearer {token}"},
    ) as r:
        await r.read()
        return r


async def test_pages_need_an_admin_credential(admin_gateway: AdminGateway) -> None:
    gw = admin_gateway(POLICY)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base(gw)}/admin/ui/simulator", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/admin/ui/login?next=/admin/ui/simulator"
        async with s.get(f"{base(gw)}/admin/decisions/stream") as r:
            assert r.status == 401
        async with s.post(f"{base(gw)}/admin/policy/validate", data="{}") as r:
            assert r.status == 401
        # A user's JWT without the admin role is refused like a wrong token.
        for wrong in ("wrong", gw.idp.token("mallory", role="user")):
            r = await login(s, gw, wrong)
            assert r.status == 401 and COOKIE not in r.cookies
        # The scripts and the login form are public: they hold nothing secret.
        async with s.get(f"{base(gw)}/admin/ui/static/simulator.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
        async with s.get(f"{base(gw)}/admin/ui/static/..%2Fadmin_pages.py") as r:
            assert r.status == 404


@pytest.mark.parametrize("credential", ["admin-token", "ops-jwt"])
async def test_login_sets_an_opaque_cookie(
    admin_gateway: AdminGateway, credential: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = admin_gateway(POLICY)
    token = ADMIN_TOKEN if credential == "admin-token" else gw.idp.token("olga", role="ops")
    # unsafe: the jar keeps cookies of an IP address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await login(s, gw, token)
        assert r.status == 200 and (await r.json())["next"] == "/admin/ui/decisions"
        cookie = r.cookies[COOKIE]
        assert token not in cookie.value and len(cookie.value) >= 40
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
        async with s.get(f"{base(gw)}/admin/ui/simulator", allow_redirects=False) as page:
            assert page.status == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        # The cookie stands for the credential on the admin API itself.
        async with s.get(f"{base(gw)}/admin/policy") as api:
            assert api.status == 200 and (await api.json())["policy"] == POLICY
        # State-changing calls from another origin are refused even with the cookie.
        async with s.post(
            f"{base(gw)}/admin/simulate",
            data=json.dumps({"action": "publish", "topic": "x"}),
            headers={"Origin": "http://evil.example"},
        ) as r2:
            assert r2.status == 403
        async with s.post(
            f"{base(gw)}/admin/ui/logout", headers={"Origin": base(gw)}, allow_redirects=False
        ) as out:
            assert out.status == 303
        async with s.get(f"{base(gw)}/admin/policy") as api:
            assert api.status == 401
    # The login is logged by who signed in; neither the token nor the cookie is.
    assert "admin page login" in caplog.text
    assert token not in caplog.text and cookie.value not in caplog.text


async def test_validate_reports_the_lines_of_the_text(admin_gateway: AdminGateway) -> None:
    gw = admin_gateway(POLICY)
    text = (
        '{\n  "version": "2.0",\n  "default_action": "deny",\n  "rules": [\n'
        '    {"id": "ok", "topic": "a/{user_id}", "action": "all", "effect": "allow"},\n'
        '    {"id": "bad", "topic": "a/#/b", "action": "all", "effect": "allow"}\n  ]\n}\n'
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base(gw)}/admin/policy/validate", data=text, headers=headers) as r,
    ):
        body = await r.json()
    assert r.status == 200 and body["valid"] is False
    assert [(e["line"], e["pointer"][:9]) for e in body["errors"]] == [(6, "/rules/1/")]


def test_filter_matches_every_field() -> None:
    entry: dict[str, Any] = {
        "kind": "publish", "verdict": "deny", "client_id": "agent-7", "user_id": "u1",
        "identity": {"user_id": "u1", "role": ["agent", "ops"], "email": None},
        "topic": "agents/7/out",
    }  # fmt: skip
    assert DecisionFilter().matches(entry)
    assert DecisionFilter(client_id="agent-7", verdict="deny", topic_prefix="agents/").matches(
        entry
    )
    assert DecisionFilter(identity="ops").matches(entry)
    assert DecisionFilter(identity="u1", kind="publish").matches(entry)
    assert not DecisionFilter(identity="u2").matches(entry)
    assert not DecisionFilter(client_id="agent-8").matches(entry)
    assert not DecisionFilter(verdict="allow").matches(entry)
    assert not DecisionFilter(topic_prefix="agents/8").matches(entry)
    assert not DecisionFilter(topic_prefix="a").matches({**entry, "topic": None})
    with pytest.raises(ValueError, match="verdict"):
        DecisionFilter.from_query({"verdict": "maybe"})
    assert sse_event("x", {"a": "b\nc"}) == b'event: x\ndata: {"a":"b\\nc"}\n\n'


async def read_events(
    r: aiohttp.ClientResponse, want: int, timeout: float
) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    name = ""
    while len(events) < want:
        try:
            raw = await asyncio.wait_for(r.content.readline(), deadline - time.monotonic())
        except TimeoutError:
            return events
        line = raw.decode()
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


async def test_stream_filters_on_the_server(admin_gateway: AdminGateway) -> None:
    gw = admin_gateway(POLICY)
    u = "p" + uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"{base(gw)}/admin/decisions/stream?client_id=watched-{u}&verdict=deny"
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        hello = await read_events(r, 1, 5)
        assert hello[0][0] == "hello" and hello[0][1]["filter"]["client_id"] == f"watched-{u}"
        other = gw.client(sub=u, client_id=f"other-{u}")
        other.connect()
        other.publish(f"pg/{u}/x", b"1", 1)
        other.publish("elsewhere", b"1", 1)
        other.disconnect()
        watched = gw.client(sub=u, client_id=f"watched-{u}", version=5)
        watched.connect()
        watched.publish(f"pg/{u}/x", b"allowed", 1)
        watched.c.publish("pg/someone-else/x", b"refused", 1)
        events = await read_events(r, 10, 3)
        watched.disconnect()
        # An agent whose token has expired is refused at CONNECT, and that shows too.
        late = gw.client(token=gw.idp.token(u, ttl_s=-120), client_id=f"watched-{u}", version=5)
        assert late.connect(expect_ok=False).is_failure
        events += await read_events(r, 1, 3)
    decisions = [e for name, e in events if name == "decision"]
    assert [(d["client_id"], d["kind"], d["verdict"], d.get("topic")) for d in decisions] == [
        (f"watched-{u}", "publish", "deny", "pg/someone-else/x"),
        (f"watched-{u}", "connect", "deny", None),
    ]
    assert decisions[0]["user_id"] == u and decisions[0]["rule_id"] is None
    assert decisions[1]["reason"] == "expired"
