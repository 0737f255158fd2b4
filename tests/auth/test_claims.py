"""Claims become bindings: dotted paths, alternatives, lists, unusable values kept and marked."""

from __future__ import annotations

from typing import Any

from gateway.auth.claims import binding_values, claim_at, identity_from_claims
from gateway.auth.config import DEFAULT_CLAIMS

from .conftest import AUDIENCE, Keys, LocalIdP, creds


def test_dotted_paths() -> None:
    claims = {"app_metadata": {"org": {"id": "acme"}}, "a.b": "literal"}
    assert claim_at(claims, "app_metadata.org.id") == "acme"
    assert claim_at(claims, "a.b") == "literal"  # a key with dots wins over the path
    assert binding_values(claims, {"org": "app_metadata.nope"}) == {}
    assert binding_values(claims, {"org": "app_metadata.org.id.deeper"}) == {}


def test_defaults_and_alternatives() -> None:
    claims = {"sub": "u1", "sid": "s-9", "email": "a@b.c", "org_id": "o1", "agent_id": "bot-1"}
    ident = identity_from_claims(claims, DEFAULT_CLAIMS, issuer="i", client_id="c")
    assert ident.as_dict() == {
        "user_id": "u1",
        "email": "a@b.c",
        "agent_id": "bot-1",
        "session_id": "s-9",
        "org": "o1",
        "client_id": "c",
    }
    assert not ident.binding("role").present
    both = identity_from_claims({**claims, "session_id": "s-1"}, DEFAULT_CLAIMS, issuer="i")
    assert both.binding("session_id").values == ("s-1",)  # first alternative wins


def test_lists_and_unusable_values_are_kept_and_marked() -> None:
    claims = {
        "sub": "u/1",  # a level separator: unusable
        "role": ["admin", "ops"],
        "email": "",
        "agent_id": "$SYS",
        "org_id": {"nested": "object"},
        "session_id": None,
        "tenant": 42,
        "groups": ["a", 1],
    }
    mapping = {**DEFAULT_CLAIMS, "tenant": "tenant", "groups": "groups"}
    ident = identity_from_claims(claims, mapping, issuer="i", client_id="c/x")
    role = ident.binding("role")
    assert role.values == ("admin", "ops") and role.multi_valued and role.usable
    for name in ("user_id", "email", "agent_id", "org", "session_id", "groups", "client_id"):
        b = ident.binding(name)
        assert b.present and not b.usable, name
    assert ident.binding("user_id").values == ("u/1",)  # kept, not dropped
    assert ident.binding("tenant").values == ("42",) and ident.binding("tenant").usable


def test_client_id_is_never_taken_from_claims() -> None:
    ident = identity_from_claims(
        {"sub": "u", "client_id": "x"}, {"client_id": "client_id"}, issuer="i"
    )
    assert not ident.binding("client_id").present


def test_a_binding_can_be_disabled() -> None:
    ident = identity_from_claims(
        {"sub": "u", "role": "admin"}, {**DEFAULT_CLAIMS, "role": ""}, issuer="i"
    )
    assert not ident.binding("role").present


async def test_claims_config_through_the_authenticator(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ed)
    auth = await make_auth(
        {
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
            "claims": {"org": "app_metadata.org_id", "role": ["roles", "role"], "device": "dev.id"},
        }
    )
    token = idp.token(
        keys.ed,
        subject="u1",
        claims={
            "app_metadata": {"org_id": "acme"},
            "role": "viewer",
            "dev": {"id": "d-7"},
            "agent_id": "a1",
        },
    )
    r = await auth.authenticate(creds(token, client_id="c9"))
    assert r.ok and r.identity is not None
    assert r.identity.as_dict() == {
        "user_id": "u1",
        "agent_id": "a1",
        "role": "viewer",
        "org": "acme",
        "device": "d-7",
        "client_id": "c9",
    }
