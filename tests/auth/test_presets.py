"""Each preset: the issuer details it fills in, and a token of that provider's shape
(claims and key type) minted locally and verified against the local JWKS."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import IssuerConfig, Reason
from gateway.auth.config import DEFAULT_CLAIMS, HMAC_ALGORITHMS
from gateway.auth.devidp import mint_token
from gateway.auth.issuers import FIREBASE_JWKS_URL, resolve_issuer
from gateway.configload import load_dataclass

from .conftest import Keys, LocalIdP, creds, now

SUPABASE_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


def resolved(table: dict[str, Any]) -> Any:
    cfg = load_dataclass(IssuerConfig, table, "test.toml", "auth.issuers[0]")
    return resolve_issuer(cfg, DEFAULT_CLAIMS)


def test_supabase_defaults() -> None:
    r = resolved({"preset": "supabase", "project": "abcd"})
    assert r.issuer == "https://abcd.supabase.co/auth/v1"
    assert r.key_location == "https://abcd.supabase.co/auth/v1/.well-known/jwks.json"
    assert r.key_source == "jwks_url"
    assert r.audiences == ("authenticated",)
    assert r.algorithms == ("ES256", "RS256")


def test_supabase_legacy_secret() -> None:
    r = resolved({"preset": "supabase", "project": "abcd", "secret_env": "SUPABASE_JWT_SECRET"})
    assert r.key_source == "secret" and r.algorithms == ("HS256",)


def test_firebase_defaults() -> None:
    r = resolved({"preset": "firebase", "project": "my-proj"})
    assert r.issuer == "https://securetoken.google.com/my-proj"
    assert r.audiences == ("my-proj",)
    assert r.key_location == FIREBASE_JWKS_URL and r.algorithms == ("RS256",)


def test_auth0_defaults() -> None:
    r = resolved({"preset": "auth0", "domain": "t.eu.auth0.com", "audiences": ["https://api"]})
    assert r.issuer == "https://t.eu.auth0.com/"
    assert r.key_location == "https://t.eu.auth0.com/.well-known/jwks.json"
    assert r.algorithms == ("RS256",)


def test_clerk_defaults() -> None:
    r = resolved({"preset": "clerk", "domain": "clerk.example.com"})
    assert r.issuer == "https://clerk.example.com"
    assert r.key_location == "https://clerk.example.com/.well-known/jwks.json"
    assert r.audiences == ()


def test_oidc_defaults() -> None:
    r = resolved(
        {"preset": "oidc", "issuer": "https://idp.example.com/realms/x", "audiences": ["a"]}
    )
    assert r.key_source == "discovery"
    assert r.key_location == "https://idp.example.com/realms/x/.well-known/openid-configuration"
    assert "RS256" in r.algorithms and not set(HMAC_ALGORITHMS) & set(r.algorithms)


async def test_supabase_token(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    issuer = "https://abcd.supabase.co/auth/v1"
    auth = await make_auth(
        {
            "issuers": [{"preset": "supabase", "project": "abcd", "jwks_url": idp.jwks_url}],
            "claims": {"org": "app_metadata.org_id"},
        }
    )
    token = mint_token(
        keys.ec,
        issuer=issuer,
        audience="authenticated",
        subject="8a4e3c52-2b64-4e0e-9d0f-5f1d8d8f2a11",
        claims={
            "email": "ann@example.com",
            "role": "authenticated",
            "aal": "aal1",
            "session_id": "0f7c0c2e-1c1b-4a53-8f3f-3b6c1d0d6b2a",
            "is_anonymous": False,
            "app_metadata": {"provider": "email", "org_id": "acme"},
            "user_metadata": {},
        },
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.binding("org").values == ("acme",)
    assert r.identity.binding("role").values == ("authenticated",)
    assert r.identity.binding("session_id").values == ("0f7c0c2e-1c1b-4a53-8f3f-3b6c1d0d6b2a",)
    # A token of another Supabase project is a different issuer.
    other = mint_token(keys.ec, issuer="https://zzzz.supabase.co/auth/v1", audience="authenticated")
    assert (await auth.authenticate(creds(other))).reason is Reason.UNKNOWN_ISSUER


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_supabase_legacy_hs256_token(
    make_auth: Any, monkeypatch: pytest.MonkeyPatch, keys: Keys
) -> None:
    monkeypatch.setenv("SUPABASE_JWT_SECRET", SUPABASE_SECRET)
    auth = await make_auth(
        {
            "issuers": [
                {"preset": "supabase", "project": "abcd", "secret_env": "SUPABASE_JWT_SECRET"}
            ]
        }
    )
    issuer = "https://abcd.supabase.co/auth/v1"
    token = mint_token(
        SUPABASE_SECRET.encode(),
        issuer=issuer,
        audience="authenticated",
        subject="u1",
        claims={"role": "authenticated"},
    )
    assert (await auth.authenticate(creds(token))).ok
    hs512 = mint_token(
        SUPABASE_SECRET.encode(), issuer=issuer, audience="authenticated", algorithm="HS512"
    )
    assert (await auth.authenticate(creds(hs512))).reason is Reason.ALG_NOT_ALLOWED


async def test_firebase_token(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth(
        {"issuers": [{"preset": "firebase", "project": "my-proj", "jwks_url": idp.jwks_url}]}
    )
    t = int(now())
    token = mint_token(
        keys.rsa,
        issuer="https://securetoken.google.com/my-proj",
        audience="my-proj",
        subject="Xk3pQ9uid",
        claims={
            "user_id": "Xk3pQ9uid",
            "auth_time": t - 100,
            "email": "bob@example.com",
            "email_verified": True,
            "firebase": {
                "identities": {"email": ["bob@example.com"]},
                "sign_in_provider": "password",
            },
        },
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.binding("user_id").values == ("Xk3pQ9uid",)
    # An ID token of another Firebase project (aud) is refused.
    wrong = mint_token(keys.rsa, issuer="https://securetoken.google.com/my-proj", audience="other")
    assert (await auth.authenticate(creds(wrong))).reason is Reason.AUDIENCE
    # Firebase signs with RS256 only.
    es = mint_token(keys.ec, issuer="https://securetoken.google.com/my-proj", audience="my-proj")
    assert (await auth.authenticate(creds(es))).reason is Reason.ALG_NOT_ALLOWED


async def test_auth0_token_with_namespaced_claims(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth(
        {
            "issuers": [
                {
                    "preset": "auth0",
                    "domain": "tenant.eu.auth0.com",
                    "audiences": ["https://api.example.com"],
                    "jwks_url": idp.jwks_url,
                    "claims": {
                        "org": "https://example.com/org",
                        "role": "https://example.com/roles",
                    },
                }
            ]
        }
    )
    token = mint_token(
        keys.rsa,
        issuer="https://tenant.eu.auth0.com/",
        audience=["https://api.example.com", "https://tenant.eu.auth0.com/userinfo"],
        subject="auth0|65f0c0ffee",
        claims={
            "azp": "AbCdEf123",
            "scope": "openid profile",
            "https://example.com/org": "acme",
            "https://example.com/roles": ["admin", "ops"],
        },
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.binding("user_id").values == ("auth0|65f0c0ffee",)
    assert r.identity.binding("org").values == ("acme",)
    assert r.identity.binding("role").values == ("admin", "ops")
    # Auth0's issuer has a trailing slash; without it, it is another issuer.
    bare = mint_token(
        keys.rsa, issuer="https://tenant.eu.auth0.com", audience="https://api.example.com"
    )
    assert (await auth.authenticate(creds(bare))).reason is Reason.UNKNOWN_ISSUER


async def test_clerk_token(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth(
        {
            "issuers": [
                {
                    "preset": "clerk",
                    "domain": "clerk.example.com",
                    "authorized_parties": ["https://app.example.com"],
                    "jwks_url": idp.jwks_url,
                }
            ]
        }
    )
    claims = {"azp": "https://app.example.com", "sid": "sess_2abc", "nbf": int(now()) - 5}
    token = mint_token(
        keys.rsa,
        issuer="https://clerk.example.com",
        audience=None,
        subject="user_2xyz",
        claims=claims,
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.binding("session_id").values == ("sess_2abc",)  # from sid
    foreign = {**claims, "azp": "https://evil.example.com"}
    token = mint_token(keys.rsa, issuer="https://clerk.example.com", audience=None, claims=foreign)
    assert (await auth.authenticate(creds(token))).reason is Reason.AUTHORIZED_PARTY


async def test_oidc_token(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth(
        {
            "issuers": [
                {
                    "preset": "oidc",
                    "issuer": idp.issuer,
                    "audiences": ["mqtt"],
                    "claims": {"role": "realm_access.roles"},
                }
            ]
        }
    )
    assert idp.hits["discovery"] == 1
    token = idp.token(
        keys.rsa,
        audience="mqtt",
        subject="f:1234",
        claims={"realm_access": {"roles": ["reader", "writer"]}, "preferred_username": "ann"},
    )
    r = await auth.authenticate(creds(token))
    assert r.ok and r.identity is not None
    assert r.identity.binding("role").values == ("reader", "writer")
