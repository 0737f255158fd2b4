"""Brute force (issue 3, item 10): failed authentications from one address are limited by a
token bucket; past the burst every attempt is refused with rate_limited (v5 CONNACK 0x9F
Connection rate exceeded, v3.1.1 0x05, HTTP 429 on an upgrade with a token), and the
limit shows in the metrics."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from gateway.mqtt.packets import Connack, Connect
from tests.conftest import GatewayFactory
from tests.e2e_auth.wire import Wire, auth_toml, dev_issuer_toml, upgrade
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp

LIMITED = {4: 0x05, 5: 0x9F}
BAD = {4: 0x04, 5: 0x86}


def make(
    gateway_factory: GatewayFactory, idp: DevIdp, burst: int, refill_per_s: float
) -> GatewayThread:
    return gateway_factory(
        auth=auth_toml(dev_issuer_toml(idp), burst=burst, refill_per_s=refill_per_s)
    )


async def code(gw: GatewayThread, password: str | None, level: int = 5) -> int:
    async with Wire(gw, level=level) as c:
        got = await c.connect(
            Connect(
                "bf",
                protocol_level=level,
                username="u" if password is not None else None,
                password=password.encode() if password is not None else None,
            )
        )
        assert isinstance(got, Connack)
        if got.reason_code:
            await c.expect_closed()
        return got.reason_code


async def auth_failures(gw: GatewayThread) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp,
    ):
        text = await resp.text()
    out: dict[str, float] = {}
    for m in re.finditer(r'^\w*auth_failures_total\{reason="(\w+)"\} ([0-9.e+]+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


@pytest.mark.parametrize("level", [4, 5])
async def test_burst_then_rate_limited(
    gateway_factory: GatewayFactory, idp: DevIdp, level: int
) -> None:
    gw = make(gateway_factory, idp, burst=3, refill_per_s=0.01)
    # Successes cost nothing.
    for _ in range(5):
        assert await code(gw, idp.token("honest"), level) == 0
    for _ in range(3):
        assert await code(gw, "guess", level) == BAD[level]
    assert await code(gw, "guess", level) == LIMITED[level]
    # Limited means limited: even a valid token, and no token at all.
    assert await code(gw, idp.token("honest"), level) == LIMITED[level]
    assert await code(gw, None, level) == LIMITED[level]
    # On the upgrade: 429 for a token, good or bad; an upgrade without one still opens
    # (its CONNECT is refused as above).
    assert await upgrade(gw, query={"access_token": idp.token("honest")}) == (
        429,
        "rate_limited\n",
    )
    assert await upgrade(gw, headers={"Authorization": "Bearer a.b.c"}) == (429, "rate_limited\n")
    assert (await upgrade(gw))[0] == 101
    failures = await auth_failures(gw)
    assert failures.get("bad_signature", 0) + failures.get("malformed", 0) == 3
    # Three refused CONNECTs and two refused upgrades: both paths are counted.
    assert failures["rate_limited"] == 5


async def test_bucket_refills(gateway_factory: GatewayFactory, idp: DevIdp) -> None:
    # One attempt a second: the three refusals below must come within a second of the
    # first failure, and the last three steps within 0.9 s of the wait; each is one
    # connection, so a slow machine has room.
    gw = make(gateway_factory, idp, burst=2, refill_per_s=1.0)
    assert await code(gw, "guess") == 0x86
    assert await code(gw, "guess") == 0x86
    assert await code(gw, "guess") == 0x9F
    await asyncio.sleep(1.1)  # one attempt regained
    assert await code(gw, idp.token("honest")) == 0
    assert await code(gw, "guess") == 0x86
    assert await code(gw, "guess") == 0x9F


async def test_upgrade_failures_are_visible_in_metrics(
    gateway_factory: GatewayFactory, idp: DevIdp
) -> None:
    gw = make(gateway_factory, idp, burst=2, refill_per_s=0.01)
    for _ in range(2):
        assert (await upgrade(gw, query={"access_token": "a.b.c"}))[0] == 401
    assert (await upgrade(gw, query={"access_token": "a.b.c"}))[0] == 429
    failures = await auth_failures(gw)
    assert sum(v for k, v in failures.items() if k != "rate_limited") == 2
    assert failures.get("rate_limited") == 1
