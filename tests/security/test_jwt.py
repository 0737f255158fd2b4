"""JWT attacks: every forged, confused or out-of-date token is refused with v5 CONNACK 0x86
(v3.1.1 0x04), and the gateway never opens a broker connection for it (issue 3, items 5 and 8)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth.devidp import DEV_AUDIENCE, DEV_ISSUER, mint_token, public_jwk
from gateway.mqtt.packets import Connack, Connect
from tests.security.conftest import Attacker, Witness, user
from tests.support.gateway_thread import GatewayThread
from tests.support.idp import DevIdp

LEVELS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]
REFUSED = {4: 0x04, 5: 0x86}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        **extra,
    }


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}"
    h = hmac.HMAC(secret, hashes.SHA256())
    h.update(signing_input.encode())
    return f"{signing_input}.{b64(h.finalize())}"


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}."


def kid(idp: DevIdp) -> str:
    return str(public_jwk(idp.key)["kid"])


def public_pem(idp: DevIdp) -> bytes:
    return idp.key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


ATTACKER = ec.generate_private_key(ec.SECP256R1())

# name -> token maker. Each one is a distinct attack.
TOKENS: dict[str, Callable[[DevIdp, str], str]] = {
    "alg_none": lambda idp, s: unsigned({"alg": "none", "typ": "JWT"}, claims(s)),
    "alg_none_with_kid": lambda idp, s: unsigned({"alg": "none", "kid": kid(idp)}, claims(s)),
    "alg_None_case": lambda idp, s: unsigned({"alg": "None", "kid": kid(idp)}, claims(s)),
    # Algorithm confusion: HS256 keyed with the issuer's public key (PEM and JWK JSON).
    "hs256_public_pem_as_secret": lambda idp, s: hs256(
        {"alg": "HS256", "kid": kid(idp)}, claims(s), public_pem(idp)
    ),
    "hs256_public_jwk_as_secret": lambda idp, s: hs256(
        {"alg": "HS256", "kid": kid(idp)}, claims(s), orjson.dumps(public_jwk(idp.key))
    ),
    # Key-header injection: the attacker's own key, offered in the header.
    "embedded_jwk": lambda idp, s: mint_token(
        ATTACKER, subject=s, kid=kid(idp), headers={"jwk": public_jwk(ATTACKER)}
    ),
    "jku": lambda idp, s: mint_token(
        ATTACKER, subject=s, kid="evil", headers={"jku": "https://127.0.0.1:1/jwks.json"}
    ),
    "x5u": lambda idp, s: mint_token(
        ATTACKER, subject=s, kid="evil", headers={"x5u": "https://127.0.0.1:1/cert.pem"}
    ),
    "kid_path_traversal": lambda idp, s: hs256(
        {"alg": "HS256", "kid": "../../../../dev/null"}, claims(s), b""
    ),
    "signed_by_other_key_same_kid": lambda idp, s: mint_token(ATTACKER, subject=s, kid=kid(idp)),
    "crit_header": lambda idp, s: mint_token(
        idp.key, subject=s, headers={"crit": ["exp"], "exp": 1}
    ),
    # Time claims.
    "expired": lambda idp, s: idp.token(s, ttl_s=-120),
    "not_yet_valid_nbf": lambda idp, s: idp.token(s, nbf=int(time.time()) + 600),
    "issued_in_the_future": lambda idp, s: mint_token(idp.key, subject=s, now=time.time() + 600),
    "no_exp": lambda idp, s: mint_token(idp.key, subject=s, ttl_s=0, claims={"exp": None}),
    # Issuer and audience.
    "unknown_issuer": lambda idp, s: mint_token(idp.key, issuer="https://evil.example", subject=s),
    "issuer_look_alike": lambda idp, s: mint_token(idp.key, issuer=DEV_ISSUER + "/", subject=s),
    "wrong_audience": lambda idp, s: mint_token(idp.key, audience="someone-else", subject=s),
    "no_audience": lambda idp, s: mint_token(idp.key, audience=None, subject=s),
    # Size and shape.
    "oversize": lambda idp, s: idp.token(s, padding="x" * 40 * 1024),
    "jwe_compact": lambda idp, s: ".".join(
        [
            b64(b'{"alg":"RSA-OAEP","enc":"A256GCM"}'),
            b64(b"k" * 32),
            b64(b"iv"),
            b64(b"ct"),
            b64(b"tag"),
        ]
    ),
    "two_parts": lambda idp, s: ".".join(idp.token(s).split(".")[:2]),
    "payload_swapped": lambda idp, s: ".".join(
        [idp.token(s).split(".")[0], b64(orjson.dumps(claims("admin"))), idp.token(s).split(".")[2]]
    ),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("attack", sorted(TOKENS))
async def test_token_refused(
    gw: GatewayThread, witness: Witness, idp: DevIdp, attack: str, level: int
) -> None:
    sub = user()
    token = TOKENS[attack](idp, sub)
    async with Attacker(gw, level=level) as w:
        got = await w.connect(
            Connect("c-" + sub, protocol_level=level, username="u", password=token.encode())
        )
        assert got == Connack(False, REFUSED[level])
        await w.expect_closed()
    witness.no_upstream_connection()


async def test_control_a_valid_token_connects(gw: GatewayThread, witness: Witness) -> None:
    """The control for the above: the same path with the issuer's own token works."""
    sub = user()
    async with Attacker(gw, level=5) as w:
        got = await w.connect(
            Connect("c-" + sub, protocol_level=5, password=gw.idp.token(sub).encode())
        )
        assert isinstance(got, Connack) and got.reason_code == 0
    assert witness.new_connections() == 1
