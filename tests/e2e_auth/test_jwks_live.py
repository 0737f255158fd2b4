"""Keys from a live JWKS URL (issue 3, item 4), end to end: rotation without a restart, an
IdP that is down at start-up or later (readiness reports it), and a flood of random kids
that cannot make the gateway hammer the IdP (the JWKS server counts its requests)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mqtt.packets import Connack, Connect
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import JwksServer, Wire, auth_toml, random_kid, upgrade
from tests.support.gateway_thread import GatewayThread

Keys = tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]


def jwks_tables(*, refetch_s: float = 60.0, min_refresh_s: float = 0.0) -> str:
    return f"""
[auth.jwks]
min_refresh_s = {min_refresh_s}
retry_s = 0.2
unknown_kid_refetch_s = {refetch_s}
timeout_s = 1.0
"""


def make(gateway_factory: GatewayFactory, jwks: JwksServer, **tables: Any) -> GatewayThread:
    return gateway_factory(auth=auth_toml(jwks.issuer_toml(), tables=jwks_tables(**tables)))


async def code(gw: GatewayThread, token: str, level: int = 5) -> int:
    async with Wire(gw, level=level) as c:
        got = await c.connect(
            Connect("jwks", protocol_level=level, username="u", password=token.encode())
        )
        assert isinstance(got, Connack)
        return got.reason_code


async def readyz(gw: GatewayThread) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/readyz") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def eventually(check: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_key_rotation_on_unknown_kid(
    gateway_factory: GatewayFactory, jwks: JwksServer, ec_keys: Keys
) -> None:
    old, new = ec_keys
    jwks.publish((old, "k-old"))
    gw = make(gateway_factory, jwks, refetch_s=0.3)
    assert await code(gw, jwks.token(old, "k-old")) == 0
    # The IdP rotates: a new kid appears, the old one is gone. No restart.
    jwks.publish((new, "k-new"))
    hits = jwks.hits
    assert await code(gw, jwks.token(new, "k-new")) == 0
    assert jwks.hits == hits + 1  # the unknown kid made exactly one refetch
    await asyncio.sleep(0.35)
    assert await code(gw, jwks.token(old, "k-old")) == 0x86  # the removed key is refused


async def test_key_rotation_by_background_refresh(
    gateway_factory: GatewayFactory, jwks: JwksServer, ec_keys: Keys
) -> None:
    old, new = ec_keys
    jwks.publish((old, "k-old"))
    jwks.cache_control = "max-age=0"  # clamped to min_refresh_s
    gw = make(gateway_factory, jwks, min_refresh_s=0.2)
    assert await code(gw, jwks.token(old, "k-old")) == 0
    jwks.publish((old, "k-old"), (new, "k-new"))
    hits = jwks.hits

    async def refreshed() -> bool:
        return jwks.hits >= hits + 1

    await eventually(refreshed)
    await asyncio.sleep(0.05)
    assert await code(gw, jwks.token(new, "k-new")) == 0
    jwks.publish((new, "k-new"))
    hits = jwks.hits
    await eventually(refreshed)
    await asyncio.sleep(0.05)
    assert await code(gw, jwks.token(old, "k-old")) == 0x86


async def test_idp_down_at_start_up(
    gateway_factory: GatewayFactory, jwks: JwksServer, ec_keys: Keys
) -> None:
    key = ec_keys[0]
    jwks.publish((key, "k1"))
    jwks.down = True
    gw = make(gateway_factory, jwks)  # starts although the IdP answers 503
    status, body = await readyz(gw)
    assert status == 503 and body["status"] == "not_ready"
    auth = body["checks"]["auth"]
    assert auth["ready"] is False
    assert auth["stale"] == [jwks.issuer]
    assert auth["issuers"][jwks.issuer]["stale"] is True
    assert auth["issuers"][jwks.issuer]["keys"] == 0
    assert "503" in auth["issuers"][jwks.issuer]["last_error"]
    assert body["checks"]["upstream"] == "ok"  # not ready because of the keys alone
    token = jwks.token(key, "k1")
    # No keys: "server unavailable" (try later), not "bad credentials".
    assert await code(gw, token, level=5) == 0x88
    assert await code(gw, token, level=4) == 0x03
    assert await upgrade(gw, query={"access_token": token}) == (503, "no_keys\n")

    jwks.down = False  # the IdP comes back: the retry picks the keys up

    async def ready() -> bool:
        return (await readyz(gw))[0] == 200

    await eventually(ready)
    status, body = await readyz(gw)
    assert body["checks"]["auth"]["stale"] == []
    assert await code(gw, token) == 0


async def test_idp_down_later_keeps_last_good_keys(
    gateway_factory: GatewayFactory, jwks: JwksServer, ec_keys: Keys
) -> None:
    key = ec_keys[0]
    jwks.publish((key, "k1"))
    jwks.cache_control = "max-age=0"
    gw = make(gateway_factory, jwks, min_refresh_s=0.2)
    jwks.down = True

    async def stale() -> bool:
        return bool((await readyz(gw))[1]["checks"]["auth"]["stale"])

    await eventually(stale)
    status, body = await readyz(gw)
    assert status == 200  # still ready: the last good keys serve
    assert body["checks"]["auth"]["stale"] == [jwks.issuer]
    assert body["checks"]["auth"]["issuers"][jwks.issuer]["keys"] == 1
    assert await code(gw, jwks.token(key, "k1")) == 0


@pytest.mark.parametrize("level", [4, 5])
async def test_random_kid_flood_one_refetch(
    gateway_factory: GatewayFactory, jwks: JwksServer, ec_keys: Keys, level: int
) -> None:
    key = ec_keys[0]
    jwks.publish((key, "k1"))
    gw = make(gateway_factory, jwks)  # unknown_kid_refetch_s = 60
    assert jwks.hits == 1  # the start-up fetch
    tokens = [jwks.token(key, random_kid()) for _ in range(40)]
    codes = await asyncio.gather(*(code(gw, t, level) for t in tokens[:30]))
    assert set(codes) == {0x86 if level == 5 else 0x04}
    for t in tokens[30:]:
        assert await upgrade(gw, headers={"Authorization": f"Bearer {t}"}) == (
            401,
            "unknown_kid\n",
        )
    assert jwks.hits == 2  # one refetch for the whole flood
    assert await code(gw, jwks.token(key, "k1"), level) == 0
