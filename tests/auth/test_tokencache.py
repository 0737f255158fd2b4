"""Verified tokens are remembered until expiry, and only while their key is live."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.auth import Reason

from .conftest import AUDIENCE, FAST_JWKS, Keys, LocalIdP, creds


def table(idp: LocalIdP) -> dict[str, Any]:
    return {"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}


async def test_reconnect_storm_verifies_once(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth({"issuers": [table(idp)]})
    token = idp.token(keys.rsa)
    for _ in range(50):
        assert (await auth.authenticate(creds(token))).ok
    assert auth.token_cache.misses == 1 and auth.token_cache.hits == 49


async def test_expired_entry_is_not_served(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [table(idp)], "leeway_s": 0})
    # exp is whole seconds (iat = int(now)): 2 s leave at least one full second for the
    # first check, however close to the next second the token was minted.
    issued = int(time.time())
    token = idp.token(keys.ec, ttl_s=2, now=issued)
    assert (await auth.authenticate(creds(token))).ok
    await asyncio.sleep(max(0.0, issued + 2 + 1.05 - time.time()))
    r = await auth.authenticate(creds(token))
    assert r.reason is Reason.EXPIRED


async def test_removed_key_stops_cached_tokens(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [table(idp)], "jwks": FAST_JWKS})
    old = idp.token(keys.ec)
    assert (await auth.authenticate(creds(old))).ok
    idp.publish(keys.rsa)  # the old key is withdrawn
    assert (await auth.authenticate(creds(idp.token(keys.rsa)))).ok  # refetch
    assert (await auth.authenticate(creds(old))).reason is Reason.UNKNOWN_KID


async def test_tampered_token_is_not_a_hit(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [table(idp)]})
    token = idp.token(keys.ec)
    assert (await auth.authenticate(creds(token))).ok
    head, body, sig = token.split(".")
    # A character in the middle: every bit of it is signature (the last ones carry padding).
    mid = len(sig) // 2
    forged = f"{head}.{body}.{sig[:mid]}{'B' if sig[mid] == 'A' else 'A'}{sig[mid + 1 :]}"
    assert (await auth.authenticate(creds(forged))).reason is Reason.BAD_SIGNATURE
