"""Client ids cannot be taken over by another identity (derive and require modes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import ClientIdConfig, ClientIdRefused, Reason
from gateway.auth.clientid import ClientIdPolicy
from gateway.identity import Identity

from .conftest import AUDIENCE, Keys, LocalIdP, creds


def who(user_id: object = "u1", **more: object) -> Identity:
    return Identity.from_values({"user_id": user_id, **more})


DERIVE = ClientIdPolicy(ClientIdConfig())
REQUIRE = ClientIdPolicy(ClientIdConfig(mode="require"))


def test_derive_default_template() -> None:
    d = DERIVE.decide(who("u1"), "sensor-7")
    assert d.ok and d.upstream_client_id == "u1:sensor-7"


def test_same_client_id_two_identities_two_sessions() -> None:
    a = DERIVE.decide(who("alice"), "shared").upstream_client_id
    b = DERIVE.decide(who("bob"), "shared").upstream_client_id
    assert a != b


def test_separator_in_user_id_cannot_collide() -> None:
    # user "a:b" + client "c"  vs  user "a" + client "b:c"
    x = DERIVE.decide(who("a:b"), "c").upstream_client_id
    y = DERIVE.decide(who("a"), "b:c").upstream_client_id
    assert x == "a%3Ab:c" and y == "a:b:c" and x != y
    assert DERIVE.decide(who("a%3Ab"), "c").upstream_client_id == "a%253Ab:c"


@given(
    st.text(min_size=1, max_size=8),
    st.text(max_size=8),
    st.text(min_size=1, max_size=8),
    st.text(max_size=8),
)
def test_derivation_is_injective(u1: str, c1: str, u2: str, c2: str) -> None:
    d1 = DERIVE.decide(who(u1), c1).upstream_client_id
    d2 = DERIVE.decide(who(u2), c2).upstream_client_id
    if c1 and c2 and (u1, c1) != (u2, c2):
        assert d1 != d2


def test_empty_client_id_keeps_working() -> None:
    assert DERIVE.decide(who("u1"), "").upstream_client_id == ""
    assert REQUIRE.decide(who("u1"), "").upstream_client_id == ""


@pytest.mark.parametrize(
    "identity", [Identity.from_values({}), who(""), who(["a", "b"]), who(None)]
)
def test_unusable_identity_is_refused(identity: Identity) -> None:
    d = DERIVE.decide(identity, "c")
    assert (
        d.reason is Reason.CLIENT_ID_UNAVAILABLE and d.connack_v5 == 0x85 and d.connack_v3 == 0x02
    )


def test_custom_template() -> None:
    p = ClientIdPolicy(ClientIdConfig(template="{org}/{user_id}/{client_id}"))
    assert p.decide(who("u", org="acme"), "c").upstream_client_id == "acme/u/c"
    assert p.decide(who("u/x", org="acme"), "c").upstream_client_id == "acme/u%2Fx/c"


def test_require_mode() -> None:
    assert REQUIRE.decide(who("u1"), "u1:anything").upstream_client_id == "u1:anything"
    assert REQUIRE.decide(who("u1"), "u1:").ok
    d = REQUIRE.decide(who("u1"), "u2:anything")
    assert d.reason is Reason.CLIENT_ID_MISMATCH and d.connack_v5 == 0x85 and d.connack_v3 == 0x02
    assert not REQUIRE.decide(who("u1"), "u1").ok
    assert not REQUIRE.decide(who("u1"), "xu1:a").ok
    # user "a" may not claim user "a:b"'s ids, nor the other way round
    assert REQUIRE.decide(who("a:b"), "a%3Ab:x").ok
    assert not REQUIRE.decide(who("a:b"), "a:b:x").ok


@pytest.mark.parametrize(
    "template,problem",
    [
        ("{user_id}", "must contain {client_id}"),
        ("{client_id}", "identity binding"),
        ("{user_id}{client_id}", "separated"),
        ("{user_id!r}:{client_id}", "plain binding names"),
        ("{user_id}:{client_id}:{user_id}", "once"),
        ("{user_id:>5}:{client_id}", "plain binding names"),
    ],
)
def test_bad_templates(template: str, problem: str) -> None:
    result = ClientIdConfig(template=template).validate()
    assert result is not None and problem in result[1]


async def test_through_the_authenticator(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth(
        {
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
            "client_id": {"mode": "require", "template": "{user_id}-{client_id}"},
        }
    )
    r = await auth.authenticate(creds(idp.token(keys.ec, subject="alice"), client_id="alice-1"))
    assert r.ok and r.identity is not None
    assert auth.upstream_client_id(r.identity, "alice-1") == "alice-1"
    with pytest.raises(ClientIdRefused) as info:
        auth.upstream_client_id(r.identity, "bob-1")
    assert info.value.reason is Reason.CLIENT_ID_MISMATCH and info.value.connack_v5 == 0x85
    assert auth.decide_client_id(r.identity, "bob-1").connack_v3 == 0x02
