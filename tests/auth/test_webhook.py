"""Bring-your-own-auth webhook against a real local aiohttp endpoint."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from aiohttp import web

from gateway.auth import Reason

from .conftest import AUDIENCE, Keys, LocalIdP, creds, now


async def allow(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body["password"] != "opensesame":
        return web.Response(status=401)
    return web.json_response(
        {"sub": body["username"], "org_id": "acme", "role": ["ops", "dev"], "agent_id": "a/1"}
    )


def webhook_table(idp: LocalIdP, **extra: Any) -> dict[str, Any]:
    return {"url": idp.webhook_url, "timeout_s": 0.5, **extra}


async def test_allow_gives_claims_as_bindings(idp: LocalIdP, make_auth: Any) -> None:
    idp.webhook = allow
    auth = await make_auth({"webhooks": [webhook_table(idp, forward_headers=["X-Device"])]})
    r = await auth.authenticate(
        creds(
            "opensesame",
            username="ann",
            client_id="dev-1",
            headers={"x-device": "d1", "Cookie": "session=zzz", "Authorization": "Basic x"},
        )
    )
    assert r.ok and r.identity is not None, r.reason
    assert r.identity.binding("user_id").values == ("ann",)
    assert r.identity.binding("org").values == ("acme",)
    assert r.identity.binding("role").values == ("ops", "dev")
    assert r.identity.binding("agent_id").present and not r.identity.binding("agent_id").usable
    assert r.identity.issuer == "webhook:127.0.0.1"
    body = idp.webhook_bodies[0]
    assert body == {
        "client_id": "dev-1",
        "username": "ann",
        "password": "opensesame",
        "remote_address": "192.0.2.1",
        "headers": {"X-Device": "d1"},  # only what it is told to forward; never cookies
    }


async def test_deny(idp: LocalIdP, make_auth: Any) -> None:
    idp.webhook = allow
    auth = await make_auth({"webhooks": [webhook_table(idp)]})
    r = await auth.authenticate(creds("wrong", username="ann"))
    assert r.reason is Reason.WEBHOOK_DENIED and r.connack_v5 == 0x87 and r.connack_v3 == 0x05


async def test_403_is_deny(idp: LocalIdP, make_auth: Any) -> None:
    async def forbid(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403)

    idp.webhook = forbid
    auth = await make_auth({"webhooks": [webhook_table(idp)]})
    assert (await auth.authenticate(creds("x", username="a"))).reason is Reason.WEBHOOK_DENIED


@pytest.mark.parametrize("kind", ["500", "timeout", "not_json", "list", "redirect"])
async def test_unavailable_fails_closed(idp: LocalIdP, make_auth: Any, kind: str) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        if kind == "500":
            return web.Response(status=500)
        if kind == "timeout":
            await asyncio.sleep(0.6)
            return web.json_response({"sub": "x"})
        if kind == "not_json":
            return web.Response(text="<html>ok</html>")
        if kind == "list":
            return web.json_response(["sub"])
        raise web.HTTPFound(idp.base + "/elsewhere")

    idp.webhook = broken
    auth = await make_auth({"webhooks": [webhook_table(idp, timeout_s=0.2)]})
    r = await auth.authenticate(creds("pw", username="a"))
    assert r.reason is Reason.WEBHOOK_UNAVAILABLE
    assert r.connack_v5 == 0x88 and r.connack_v3 == 0x03


async def test_unreachable_fails_closed(make_auth: Any) -> None:
    auth = await make_auth({"webhooks": [{"url": "http://127.0.0.1:9/hook", "timeout_s": 0.5}]})
    assert (await auth.authenticate(creds("pw"))).reason is Reason.WEBHOOK_UNAVAILABLE


async def test_positive_answers_are_cached_by_credentials(idp: LocalIdP, make_auth: Any) -> None:
    idp.webhook = allow
    # A TTL long enough for the calls below on a slow machine, short enough to wait out.
    auth = await make_auth({"webhooks": [webhook_table(idp, cache_ttl_s=1.0)]})
    for _ in range(3):
        assert (await auth.authenticate(creds("opensesame", username="ann"))).ok
    assert idp.hits["webhook"] == 1
    # Other credentials are another cache entry; denials are not cached.
    assert (await auth.authenticate(creds("opensesame", username="bob"))).ok
    assert (await auth.authenticate(creds("wrong", username="ann"))).reason is Reason.WEBHOOK_DENIED
    assert (await auth.authenticate(creds("wrong", username="ann"))).reason is Reason.WEBHOOK_DENIED
    assert idp.hits["webhook"] == 4
    await asyncio.sleep(1.05)  # TTL passed
    assert (await auth.authenticate(creds("opensesame", username="ann"))).ok
    assert idp.hits["webhook"] == 5


async def test_binary_password_is_sent_base64(idp: LocalIdP, make_auth: Any) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"sub": "x"})

    idp.webhook = echo
    auth = await make_auth({"webhooks": [webhook_table(idp)]})
    assert (await auth.authenticate(creds(b"\x00\xff", username="a"))).ok
    body = idp.webhook_bodies[0]
    assert body["password"] is None
    assert base64.b64decode(body["password_base64"]) == b"\x00\xff"


async def test_gateway_credential_and_username_pattern(
    idp: LocalIdP, make_auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    async def check(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"sub": "device"})

    idp.webhook = check
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-value")
    auth = await make_auth(
        {"webhooks": [webhook_table(idp, username_pattern="device-*", secret_env="HOOK_SECRET")]}
    )
    assert (await auth.authenticate(creds("pw", username="device-7"))).ok
    assert seen == ["Bearer hook-secret-value"]
    # A user name the webhook is not for: nobody to ask, and the password is no JWT.
    assert (await auth.authenticate(creds("pw", username="human"))).reason is Reason.MALFORMED
    assert idp.hits["webhook"] == 1


async def test_expired_webhook_claims(idp: LocalIdP, make_auth: Any) -> None:
    async def stale(request: web.Request) -> web.StreamResponse:
        return web.json_response({"sub": "x", "exp": int(now()) - 10})

    idp.webhook = stale
    auth = await make_auth({"webhooks": [webhook_table(idp)]})
    assert (await auth.authenticate(creds("pw"))).reason is Reason.EXPIRED


async def test_jwt_of_a_configured_issuer_never_reaches_the_webhook(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    async def yes(request: web.Request) -> web.StreamResponse:
        return web.json_response({"sub": "anyone"})

    idp.webhook = yes
    idp.publish(keys.ec)
    auth = await make_auth(
        {
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
            "webhooks": [webhook_table(idp)],
        }
    )
    r = await auth.authenticate(creds(idp.token(keys.ec, now=now() - 7200)))
    assert r.reason is Reason.EXPIRED
    assert idp.hits["webhook"] == 0
    # A JWT of an unknown issuer may be an opaque credential for the webhook to judge.
    foreign = idp.token(keys.ec, issuer="https://other.test")
    assert (await auth.authenticate(creds(foreign))).ok
    assert idp.webhook_bodies[-1]["password"] == foreign


async def test_header_token_goes_to_the_webhook_as_password(idp: LocalIdP, make_auth: Any) -> None:
    async def yes(request: web.Request) -> web.StreamResponse:
        return web.json_response({"sub": "x"})

    idp.webhook = yes
    auth = await make_auth({"webhooks": [webhook_table(idp)]})
    assert (await auth.authenticate(creds(header="opaque-api-key"))).ok
    assert idp.webhook_bodies[-1]["password"] == "opaque-api-key"
    assert await auth.check_upgrade_token("opaque-api-key", None) is None  # decided at CONNECT
