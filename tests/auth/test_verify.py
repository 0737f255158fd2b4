"""Every verification outcome, with real tokens signed at test time against a local JWKS."""

from __future__ import annotations

import base64
import logging
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.auth import Authenticator, Reason
from gateway.auth.devidp import mint_token, public_jwk
from gateway.auth.reasons import (
    V3_BAD_USERNAME_OR_PASSWORD,
    V3_NOT_AUTHORIZED,
    V5_BAD_AUTHENTICATION_METHOD,
    V5_BAD_USERNAME_OR_PASSWORD,
    V5_NOT_AUTHORIZED,
)

from .conftest import AUDIENCE, FAST_JWKS, Keys, LocalIdP, creds, now

SECRET = "s" * 40  # a test-only HMAC secret, long enough for RFC 7518 §3.2
HS_ISSUER = "https://hs.example.test/auth/v1"


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return (
        f"{b64(header)}.{b64(payload)}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    )


@pytest.fixture
async def auth(idp: LocalIdP, keys: Keys, make_auth: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    idp.publish(keys.rsa, keys.ec, keys.ed, keys.ec384)
    # The RSA key is published without "alg", so it serves both RS256 and PS256.
    del idp.jwks["keys"][0]["alg"]
    monkeypatch.setenv("TEST_HS_SECRET", SECRET)
    return await make_auth(
        {
            "issuers": [
                {
                    "issuer": idp.issuer,
                    "audiences": [AUDIENCE],
                    "jwks_url": idp.jwks_url,
                    "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
                },
                {
                    "issuer": HS_ISSUER,
                    "audiences": ["authenticated"],
                    "secret_env": "TEST_HS_SECRET",
                },
            ],
            "jwks": FAST_JWKS,
        }
    )


async def reason_of(auth: Authenticator, token: str) -> Reason | None:
    result = await auth.authenticate(creds(token))
    assert result.ok == (result.reason is None)
    return result.reason


@pytest.mark.parametrize(
    "which,alg", [("rsa", "RS256"), ("rsa", "PS256"), ("ec", "ES256"), ("ed", "EdDSA")]
)
async def test_valid_tokens_of_every_key_type(
    auth: Authenticator, idp: LocalIdP, keys: Keys, which: str, alg: str
) -> None:
    token = idp.token(getattr(keys, which), algorithm=alg, claims={"email": "a@b.c"})
    result = await auth.authenticate(creds(token))
    assert result.ok, result.reason
    assert result.identity is not None
    assert result.identity.issuer == idp.issuer
    assert result.identity.subject == "u1"
    assert result.identity.binding("user_id").values == ("u1",)
    assert result.identity.binding("email").values == ("a@b.c",)
    assert result.identity.binding("client_id").values == ("c1",)
    assert result.identity.expires_at is not None and result.identity.expires_at > now()
    assert result.connack_v5 is None and result.connack_v3 is None


async def test_hs256_for_a_secret_issuer(auth: Authenticator) -> None:
    token = mint_token(SECRET.encode(), issuer=HS_ISSUER, audience="authenticated", subject="u2")
    result = await auth.authenticate(creds(token))
    assert result.ok and result.identity is not None
    assert result.identity.subject == "u2"


async def test_hs_with_the_wrong_secret(auth: Authenticator) -> None:
    token = mint_token(b"x" * 40, issuer=HS_ISSUER, audience="authenticated", subject="u2")
    assert await reason_of(auth, token) is Reason.BAD_SIGNATURE


async def test_expired(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    # Past the 30 s default leeway.
    token = idp.token(keys.ec, now=now() - 3600, ttl_s=3600 - 31)
    r = await auth.authenticate(creds(token))
    assert r.reason is Reason.EXPIRED
    assert (
        r.connack_v5 == V5_BAD_USERNAME_OR_PASSWORD and r.connack_v3 == V3_BAD_USERNAME_OR_PASSWORD
    )


async def test_expired_within_leeway_is_accepted(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    token = idp.token(keys.ec, now=now() - 3600, ttl_s=3600 - 20)
    assert await reason_of(auth, token) is None


async def test_not_yet_valid_nbf(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.ec, claims={"nbf": int(now()) + 120})
    assert await reason_of(auth, token) is Reason.NOT_YET_VALID


async def test_not_yet_valid_iat_in_the_future(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    token = idp.token(keys.ec, now=now() + 600)
    assert await reason_of(auth, token) is Reason.NOT_YET_VALID


async def test_bad_signature(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.ec)
    head, _payload, sig = token.split(".")
    tampered = b64({**jwt.decode(token, options={"verify_signature": False}), "sub": "admin"})
    assert await reason_of(auth, f"{head}.{tampered}.{sig}") is Reason.BAD_SIGNATURE


async def test_signed_by_an_unpublished_key_with_a_published_kid(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    published_kid = public_jwk(keys.rsa)["kid"]
    token = idp.token(keys.rsa2, kid=published_kid)
    assert await reason_of(auth, token) is Reason.BAD_SIGNATURE


async def test_unknown_issuer_makes_no_request(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    before = sum(idp.hits.values())
    token = idp.token(keys.ec, issuer="https://evil.example.test")
    assert await reason_of(auth, token) is Reason.UNKNOWN_ISSUER
    assert sum(idp.hits.values()) == before


async def test_missing_iss_is_unknown_issuer(auth: Authenticator, keys: Keys) -> None:
    token = jwt.encode({"sub": "u1", "exp": int(now()) + 60, "aud": AUDIENCE}, keys.ec, "ES256")
    assert await reason_of(auth, token) is Reason.UNKNOWN_ISSUER


async def test_unknown_kid(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.rsa2)  # kid = thumbprint of a key that is not published
    assert await reason_of(auth, token) is Reason.UNKNOWN_KID


async def test_wrong_audience(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    assert await reason_of(auth, idp.token(keys.ec, audience="someone-else")) is Reason.AUDIENCE


async def test_missing_audience(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    assert await reason_of(auth, idp.token(keys.ec, audience=None)) is Reason.AUDIENCE


async def test_one_of_several_audiences(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    assert await reason_of(auth, idp.token(keys.ec, audience=["x", AUDIENCE])) is None


async def test_missing_exp(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    payload = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "u1"}
    token = jwt.encode(payload, keys.ec, "ES256", headers={"kid": public_jwk(keys.ec)["kid"]})
    assert await reason_of(auth, token) is Reason.MISSING_CLAIM


async def test_alg_none_is_refused(auth: Authenticator, idp: LocalIdP) -> None:
    token = forge({"alg": "none"}, {"iss": idp.issuer, "aud": AUDIENCE, "exp": int(now()) + 60})
    assert await reason_of(auth, token) is Reason.ALG_NOT_ALLOWED


async def test_alg_not_in_the_allowlist(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    # RS512 is a fine algorithm, but this issuer only allows RS256/PS256/ES256/EdDSA.
    assert await reason_of(auth, idp.token(keys.rsa, algorithm="RS512")) is Reason.ALG_NOT_ALLOWED


async def test_hs256_with_the_public_key_as_secret(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    """The classic RS/HS confusion: HMAC keyed with the issuer's public key bytes."""
    pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "u1", "exp": int(now()) + 60}
    header = {"alg": "HS256", "kid": public_jwk(keys.rsa)["kid"], "typ": "JWT"}
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    import hashlib
    import hmac

    sig = hmac.new(pem, signing_input, hashlib.sha256).digest()
    token = forge(header, payload, sig)
    assert await reason_of(auth, token) is Reason.ALG_NOT_ALLOWED


async def test_alg_must_fit_the_key_type(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    """ES256 header with the RSA key's kid: no key fits, so no key is tried."""
    token = idp.token(keys.ec, kid=public_jwk(keys.rsa)["kid"])
    assert await reason_of(auth, token) is Reason.UNKNOWN_KID


async def test_es256_header_on_a_p384_key(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    # The P-384 key is published, but ES256 is bound to P-256 (RFC 7518 §3.4).
    token = idp.token(keys.ec384, algorithm="ES384")
    assert await reason_of(auth, token) is Reason.ALG_NOT_ALLOWED
    header = {"alg": "ES256", "kid": public_jwk(keys.ec384)["kid"]}
    forged = forge(header, {"iss": idp.issuer, "aud": AUDIENCE, "exp": int(now()) + 60})
    assert await reason_of(auth, forged) is Reason.UNKNOWN_KID


async def test_hs_issuer_refuses_rs(auth: Authenticator, keys: Keys) -> None:
    token = mint_token(keys.rsa, issuer=HS_ISSUER, audience="authenticated", subject="u")
    assert await reason_of(auth, token) is Reason.ALG_NOT_ALLOWED


async def test_crit_is_refused(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.ec, headers={"crit": ["exp"], "exp": 1})
    assert await reason_of(auth, token) is Reason.CRIT_UNSUPPORTED


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
async def test_key_url_headers_are_never_followed(
    auth: Authenticator, idp: LocalIdP, keys: Keys, header: str
) -> None:
    """A token signed by the attacker's key, pointing at the attacker's key: refused, no fetch."""
    attacker_jwk = public_jwk(keys.rsa2)
    value: object = attacker_jwk if header == "jwk" else idp.base + "/attacker.json"
    token = idp.token(keys.rsa2, kid="attacker", headers={header: value})
    before = idp.hits["jwks"]
    assert await reason_of(auth, token) is Reason.UNKNOWN_KID
    # one (throttled) refetch of the issuer's own JWKS at most, nothing else
    assert idp.hits["jwks"] <= before + 1
    assert set(idp.hits) <= {"jwks"}


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "...", "!!.??.xx", b64([1]) + "." + b64({}) + ".x"],
)
async def test_malformed(auth: Authenticator, token: str) -> None:
    r = await auth.authenticate(creds(header=token if token else None, password=None))
    expected = Reason.NO_TOKEN if token == "" else Reason.MALFORMED
    assert r.reason is expected


async def test_too_large(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.ec, claims={"pad": "x" * 9000})
    assert await reason_of(auth, token) is Reason.TOO_LARGE


async def test_sub_must_be_a_string(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    assert (
        await reason_of(auth, idp.token(keys.ec, subject=None, claims={"sub": 5}))
        is Reason.MALFORMED
    )


async def test_no_token(auth: Authenticator) -> None:
    r = await auth.authenticate(creds(None))
    assert r.reason is Reason.NO_TOKEN
    assert r.connack_v5 == V5_NOT_AUTHORIZED and r.connack_v3 == V3_NOT_AUTHORIZED


async def test_a_non_jwt_password_without_webhook(auth: Authenticator) -> None:
    assert await reason_of(auth, "hunter2") is Reason.MALFORMED


async def test_binary_password_is_not_a_token(auth: Authenticator) -> None:
    r = await auth.authenticate(creds(b"\xff\xfe"))
    assert r.reason is Reason.NO_TOKEN


async def test_other_auth_method_is_refused(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    r = await auth.authenticate(creds(idp.token(keys.ec), auth_method="SCRAM-SHA-256"))
    assert r.reason is Reason.BAD_AUTH_METHOD and r.connack_v5 == V5_BAD_AUTHENTICATION_METHOD
    r = await auth.authenticate(creds(idp.token(keys.ec), auth_method="jwt"))
    assert r.ok


# -- carriers -----------------------------------------------------------------------------


async def test_every_carrier(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    token = idp.token(keys.ec)
    for c in (
        creds(token, username="anything"),
        creds(header=token),
        creds(query=token),
        creds(token, header=token, query=token),
    ):
        assert (await auth.authenticate(c)).ok


async def test_v5_authentication_data_with_method_jwt(
    auth: Authenticator, idp: LocalIdP, keys: Keys
) -> None:
    token = idp.token(keys.ec)
    r = await auth.authenticate(creds(None, auth_method="jwt", auth_data=token.encode()))
    assert r.ok
    r = await auth.authenticate(creds(token, auth_method="jwt", auth_data=token.encode()))
    assert r.ok
    other = idp.token(keys.ec, subject="u2")
    r = await auth.authenticate(creds(other, auth_method="jwt", auth_data=token.encode()))
    assert r.reason is Reason.TOKEN_MISMATCH
    r = await auth.authenticate(creds(None, auth_method="jwt", auth_data=b"\xff"))
    assert r.reason is Reason.MALFORMED


async def test_carriers_must_agree(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    a, b = idp.token(keys.ec, subject="a"), idp.token(keys.ec, subject="b")
    assert (await auth.authenticate(creds(a, header=b))).reason is Reason.TOKEN_MISMATCH
    assert (await auth.authenticate(creds(header=a, query=b))).reason is Reason.TOKEN_MISMATCH


async def test_token_sources_restrict_carriers(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth(
        {
            "token_sources": ["header"],
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
        }
    )
    token = idp.token(keys.ec)
    assert (await auth.authenticate(creds(token))).reason is Reason.NO_TOKEN
    assert (await auth.authenticate(creds(query=token))).reason is Reason.NO_TOKEN
    assert (await auth.authenticate(creds(header=token))).ok
    # The query token is ignored entirely, so it cannot cause a mismatch either.
    assert (await auth.authenticate(creds(header=token, query="x.y.z"))).ok


async def test_upgrade_check(auth: Authenticator, idp: LocalIdP, keys: Keys) -> None:
    assert await auth.check_upgrade_token(None, None) is None
    good = await auth.check_upgrade_token(idp.token(keys.ec), None, "192.0.2.9")
    assert good is not None and good.ok and good.http_status is None
    bad = await auth.check_upgrade_token(None, idp.token(keys.ec, audience="x"), "192.0.2.9")
    assert bad is not None and bad.reason is Reason.AUDIENCE and bad.http_status == 401
    mismatch = await auth.check_upgrade_token(idp.token(keys.ec), idp.token(keys.ed))
    assert mismatch is not None and mismatch.reason is Reason.TOKEN_MISMATCH


# -- secrecy ------------------------------------------------------------------------------


async def test_tokens_never_appear_in_results_or_logs(
    auth: Authenticator, idp: LocalIdP, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [
        idp.token(keys.ec, audience="x"),
        idp.token(keys.rsa2),
        idp.token(keys.ec, now=now() - 7200),
        idp.token(keys.ec, issuer="https://nope.test"),
        "not-a-jwt-secret-password",
    ]
    for token in tokens:
        r = await auth.authenticate(creds(token))
        assert not r.ok
        for part in [token, *token.split(".")]:
            if len(part) > 8:
                assert part not in repr(r)
                assert part not in str(r.reason)
                assert part not in caplog.text
    assert "not-a-jwt" not in repr(creds("not-a-jwt-secret-password", header="not-a-jwt-h"))


async def test_token_without_kid(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa, keys.rsa2)
    for k in idp.jwks["keys"]:
        del k["kid"]
    auth = await make_auth(
        {"issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}]}
    )
    for key in (keys.rsa, keys.rsa2):
        payload = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "u", "exp": int(now()) + 60}
        assert (await auth.authenticate(creds(jwt.encode(payload, key, "RS256")))).ok
    assert (await auth.authenticate(creds(idp.token(keys.rsa2, kid="k")))).reason is (
        Reason.UNKNOWN_KID
    )


async def test_token_without_kid_against_a_large_key_set(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.rsa, *[keys.rsa2] * 4, kids=("a", "b", "c", "d", "e"))
    auth = await make_auth(
        {"issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}]}
    )
    payload = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "u", "exp": int(now()) + 60}
    token = jwt.encode(payload, keys.rsa, "RS256")
    assert (await auth.authenticate(creds(token))).reason is Reason.UNKNOWN_KID
    assert (await auth.authenticate(creds(idp.token(keys.rsa, kid="a")))).ok


async def test_arbitrary_input_is_a_reason_never_an_exception(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    """Garbage in any carrier yields a failure reason; nothing escapes into the event loop."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    idp.publish(keys.ec)
    auth = await make_auth(
        {
            "issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url}],
            "rate_limit": {"enabled": False},
            "jwks": FAST_JWKS,
        }
    )
    parts = st.one_of(
        st.text(max_size=40),
        st.builds(
            b64,
            st.dictionaries(
                st.sampled_from(["alg", "kid", "iss", "crit", "exp"]),
                st.one_of(
                    st.none(),
                    st.integers(-(2**53), 2**53),
                    st.text(max_size=5),
                    st.just("ES256"),
                    st.just(idp.issuer),
                ),
            ),
        ),
    )
    tokens = st.builds(lambda a, b, c: f"{a}.{b}.{c}", parts, parts, st.text(max_size=10))
    # Hypothesis drives a synchronous function; it collects inputs that are then awaited.
    pending: list[str | bytes] = []

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(tokens, st.binary(max_size=60)))
    def collect(value: str | bytes) -> None:
        pending.append(value)

    collect()
    for value in pending:
        c = creds(value) if isinstance(value, bytes) else creds(header=value or None)
        r = await auth.authenticate(c)
        assert not r.ok and isinstance(r.reason, Reason)
