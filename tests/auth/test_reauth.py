"""MQTT v5 re-authentication (AUTH 0x19, method "jwt"): same sub, issuer and org."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import Authenticator, Reason
from gateway.identity import Identity

from .conftest import AUDIENCE, Keys, LocalIdP, creds, now

SECOND_ISSUER = "https://second.example.test"


@pytest.fixture
async def auth(idp: LocalIdP, keys: Keys, make_auth: Any, tmp_path: Any) -> Authenticator:
    import json

    from gateway.auth.devidp import public_jwk

    idp.publish(keys.ec)
    jwks = tmp_path / "second.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(keys.rsa)]}))
    a: Authenticator = await make_auth(
        {
            "issuers": [
                {"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url},
                {"issuer": SECOND_ISSUER, "audiences": [AUDIENCE], "jwks_file": str(jwks)},
            ]
        }
    )
    return a


async def connect(auth: Authenticator, token: str) -> Identity:
    r = await auth.authenticate(creds(token, client_id="c1"))
    assert r.ok and r.identity is not None
    return r.identity


async def test_fresh_token_extends_expiry(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    first = await connect(auth, idp.token(keys.ec, ttl_s=60, claims={"org_id": "o1"}))
    r = await auth.reauthenticate(first, idp.token(keys.ec, ttl_s=3600, claims={"org_id": "o1"}))
    assert r.ok and r.identity is not None
    assert first.expires_at is not None and r.identity.expires_at is not None
    assert r.identity.expires_at > first.expires_at + 3000
    assert r.identity.binding("client_id").values == ("c1",)  # carried over
    assert auth.stats.reauth_successes == 1


async def test_other_subject_is_refused(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    first = await connect(auth, idp.token(keys.ec, subject="u1"))
    r = await auth.reauthenticate(first, idp.token(keys.ec, subject="u2"))
    assert r.reason is Reason.REAUTH_SUBJECT_CHANGED and r.disconnect_v5 == 0x87


async def test_other_issuer_is_refused(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    from gateway.auth.devidp import mint_token

    first = await connect(auth, idp.token(keys.ec, subject="u1"))
    other = mint_token(keys.rsa, issuer=SECOND_ISSUER, audience=AUDIENCE, subject="u1")
    assert (await auth.authenticate(creds(other))).ok  # valid on its own
    r = await auth.reauthenticate(first, other)
    assert r.reason is Reason.REAUTH_ISSUER_CHANGED


@pytest.mark.parametrize("new_org", [{"org_id": "o2"}, {}, {"org_id": ["o1", "o2"]}])
async def test_other_org_is_refused(
    auth: Authenticator, idp: LocalIdP, keys: Keys, new_org: dict[str, Any]
) -> None:
    first = await connect(auth, idp.token(keys.ec, claims={"org_id": "o1"}))
    r = await auth.reauthenticate(first, idp.token(keys.ec, claims=new_org))
    assert r.reason is Reason.REAUTH_ORG_CHANGED


async def test_invalid_fresh_token(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    first = await connect(auth, idp.token(keys.ec))
    r = await auth.reauthenticate(first, idp.token(keys.ec, now=now() - 7200))
    assert r.reason is Reason.EXPIRED and r.disconnect_v5 == 0x87
    r = await auth.reauthenticate(first, "garbage")
    assert r.reason is Reason.MALFORMED
