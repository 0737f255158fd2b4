"""JWKS cache: start-up fetch, refresh, rotation without restart, IdP down, kid floods."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import JwksConfig, Reason
from gateway.auth.devidp import public_jwk
from gateway.auth.jwks import cache_lifetime

from .conftest import AUDIENCE, FAST_JWKS, Keys, LocalIdP, creds


def issuer_table(idp: LocalIdP, **extra: Any) -> dict[str, Any]:
    return {"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks_url": idp.jwks_url, **extra}


async def test_keys_are_fetched_at_start(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [issuer_table(idp)]})
    assert idp.hits["jwks"] == 1
    assert (await auth.authenticate(creds(idp.token(keys.ec)))).ok
    assert idp.hits["jwks"] == 1  # served from the cache
    ready = auth.readiness()
    assert ready["ready"] is True and ready["stale"] == []


async def test_rotation_without_restart(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [issuer_table(idp)], "jwks": FAST_JWKS})
    old = idp.token(keys.ec)
    assert (await auth.authenticate(creds(old))).ok
    # The IdP rotates: new key published, old one withdrawn.
    idp.publish(keys.rsa)
    new = idp.token(keys.rsa)
    assert (await auth.authenticate(creds(new))).ok  # unknown kid → one refetch
    assert idp.hits["jwks"] == 2
    assert (await auth.authenticate(creds(old))).reason is Reason.UNKNOWN_KID


async def test_background_refresh_honours_max_age(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ec)
    idp.cache_control = "public, max-age=0"  # clamped up to the floor of 0.2 s
    jwks = {**FAST_JWKS, "min_refresh_s": 0.2}
    await make_auth({"issuers": [issuer_table(idp)], "jwks": jwks})
    await asyncio.sleep(0.5)
    assert 2 <= idp.hits["jwks"] <= 4


async def test_idp_down_at_start_then_recovers(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    idp.down = True
    auth = await make_auth({"issuers": [issuer_table(idp)], "jwks": FAST_JWKS})
    ready = auth.readiness()
    assert ready["ready"] is False and ready["stale"] == [idp.issuer]
    r = await auth.authenticate(creds(idp.token(keys.ec)))
    assert r.reason is Reason.NO_KEYS and r.connack_v5 == 0x88 and r.connack_v3 == 0x03
    idp.down = False
    await asyncio.sleep(0.2)  # retry_s = 0.05
    assert auth.readiness()["ready"] is True and auth.readiness()["stale"] == []
    assert (await auth.authenticate(creds(idp.token(keys.ec)))).ok


async def test_last_good_keys_keep_serving_while_idp_is_down(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ec)
    idp.cache_control = "max-age=0"
    jwks = {**FAST_JWKS, "min_refresh_s": 0.05}
    auth = await make_auth({"issuers": [issuer_table(idp)], "jwks": jwks})
    idp.down = True
    await asyncio.sleep(0.3)
    assert idp.hits["jwks"] >= 3  # it kept trying
    ready = auth.readiness()
    assert ready["ready"] is True and ready["stale"] == [idp.issuer]
    issuers: Any = ready["issuers"]
    assert issuers[idp.issuer]["keys"] == 1 and "503" in issuers[idp.issuer]["last_error"]
    assert (await auth.authenticate(creds(idp.token(keys.ec)))).ok


async def test_garbage_jwks_keeps_last_good_keys(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.ec)
    auth = await make_auth({"issuers": [issuer_table(idp)], "jwks": FAST_JWKS})
    idp.jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}  # symmetric keys are never accepted
    r = await auth.authenticate(creds(idp.token(keys.rsa)))  # unknown kid → refetch
    assert r.reason is Reason.UNKNOWN_KID and idp.hits["jwks"] == 2
    assert (await auth.authenticate(creds(idp.token(keys.ec)))).ok
    assert auth.readiness()["stale"] == [idp.issuer]


async def test_random_kid_flood_fetches_at_most_once(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ec)
    auth = await make_auth(
        {"issuers": [issuer_table(idp)], "jwks": FAST_JWKS, "rate_limit": {"enabled": False}}
    )
    tokens = [idp.token(keys.ec, kid=f"random-{i}") for i in range(200)]
    results = await asyncio.gather(*(auth.authenticate(creds(t)) for t in tokens))
    assert all(r.reason is Reason.UNKNOWN_KID for r in results)
    # One after the other too (concurrent ones could share one in-flight request).
    for i in range(50):
        r = await auth.authenticate(creds(idp.token(keys.ec, kid=f"seq-{i}")))
        assert r.reason is Reason.UNKNOWN_KID
    assert idp.hits["jwks"] == 2  # start-up + one refetch in the interval
    assert (await auth.authenticate(creds(idp.token(keys.ec)))).ok


async def test_unknown_kid_refetch_interval_elapses(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    idp.publish(keys.ec)
    jwks = {**FAST_JWKS, "unknown_kid_refetch_s": 0.1}
    auth = await make_auth({"issuers": [issuer_table(idp)], "jwks": jwks})
    await auth.authenticate(creds(idp.token(keys.ec, kid="a")))
    await auth.authenticate(creds(idp.token(keys.ec, kid="b")))
    assert idp.hits["jwks"] == 2
    await asyncio.sleep(0.15)
    await auth.authenticate(creds(idp.token(keys.ec, kid="c")))
    assert idp.hits["jwks"] == 3


async def test_oidc_discovery(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)
    auth = await make_auth(
        {"issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "discovery": True}]}
    )
    assert idp.hits["discovery"] == 1 and idp.hits["jwks"] == 1
    assert (await auth.authenticate(creds(idp.token(keys.rsa)))).ok


async def test_discovery_issuer_mismatch_is_refused(
    idp: LocalIdP, keys: Keys, make_auth: Any
) -> None:
    """OIDC Discovery §4.3: a document naming another issuer is not trusted."""
    idp.publish(keys.rsa)
    idp.discovery_issuer = "https://someone-else.test"
    auth = await make_auth(
        {"issuers": [{"issuer": idp.issuer, "audiences": [AUDIENCE], "discovery": True}]}
    )
    assert idp.hits["jwks"] == 0
    assert (await auth.authenticate(creds(idp.token(keys.rsa)))).reason is Reason.NO_KEYS
    issuers: Any = auth.readiness()["issuers"]
    assert "issuer does not match" in issuers[idp.issuer]["last_error"]


async def test_unreachable_idp_does_not_fail_start(keys: Keys, make_auth: Any) -> None:
    # Port 9 on loopback: nothing listens (connection refused, instantly).
    auth = await make_auth(
        {
            "issuers": [
                {
                    "issuer": "http://127.0.0.1:9",
                    "audiences": ["a"],
                    "jwks_url": "http://127.0.0.1:9/j",
                }
            ]
        }
    )
    assert auth.readiness()["ready"] is False


async def test_jwks_file_rotation(tmp_path: Path, keys: Keys, make_auth: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(keys.ec)]}))
    issuer = "https://file.example.test"
    auth = await make_auth(
        {"issuers": [{"issuer": issuer, "audiences": ["a"], "jwks_file": str(path)}]}
    )
    from gateway.auth.devidp import mint_token

    assert (await auth.authenticate(creds(mint_token(keys.ec, issuer=issuer, audience="a")))).ok
    path.write_text(json.dumps({"keys": [public_jwk(keys.ed)]}))
    import os

    os.utime(path, (1, 1))  # make sure the mtime differs
    assert (await auth.authenticate(creds(mint_token(keys.ed, issuer=issuer, audience="a")))).ok


@pytest.mark.parametrize(
    "header,expected",
    [
        (None, 3600.0),
        ("max-age=120", 120.0),
        ("public, max-age=10", 60.0),  # floor
        ("max-age=9999999", 86400.0),  # ceiling
        ("no-store", 60.0),
        ("s-maxage=5, max-age=300", 300.0),
    ],
)
def test_cache_lifetime(header: str | None, expected: float) -> None:
    assert cache_lifetime(header, JwksConfig()) == expected


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_rsa_keys_below_2048_bits_are_skipped(idp: LocalIdP, make_auth: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(65537, 1024)
    idp.publish(weak)
    auth = await make_auth({"issuers": [issuer_table(idp)]})
    assert auth.readiness()["ready"] is False
    r = await auth.authenticate(creds(idp.token(weak)))
    assert r.reason is Reason.NO_KEYS


async def test_jwk_alg_pins_the_algorithm(idp: LocalIdP, keys: Keys, make_auth: Any) -> None:
    idp.publish(keys.rsa)  # published with alg RS256
    auth = await make_auth({"issuers": [issuer_table(idp)]})
    assert (await auth.authenticate(creds(idp.token(keys.rsa)))).ok
    r = await auth.authenticate(creds(idp.token(keys.rsa, algorithm="PS256")))
    assert r.reason is Reason.UNKNOWN_KID
