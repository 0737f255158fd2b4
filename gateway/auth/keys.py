"""Verification keys: parsing JWKS documents and PEM files, and which key fits which ``alg``.

RFC 7517 (JWK) §4 and RFC 7518 (JWA) §3. A key is chosen by ``kid`` from the issuer's
configured key set only; ``jku``, ``x5u`` and embedded ``jwk`` headers are never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

# NIST SP 800-131A: RSA keys under 2048 bits are not acceptable for signatures.
MIN_RSA_BITS = 2048

# RFC 7518 §3.4: each ES algorithm is bound to one curve.
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


class UnusableKey(ValueError):
    """A key that cannot be used; the message never contains key material."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key (or an HMAC secret) with the ``kid`` and ``alg`` its JWK declared."""

    kid: str | None
    key: PublicKey | bytes
    alg: str | None = None

    def fits(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be checked with this key (RFC 7518 §3.1).

        This is what prevents algorithm confusion: an RSA public key is never an HMAC
        secret and an HMAC secret never verifies an asymmetric algorithm.
        """
        if self.alg is not None and self.alg != alg:
            return False
        return key_fits_algorithm(self.key, alg)


def key_fits_algorithm(key: PublicKey | bytes, alg: str) -> bool:
    if alg.startswith("HS"):
        return isinstance(key, bytes)
    if alg[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_CURVES[alg])
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def _public(key: Any) -> PublicKey:
    """The public half; a JWKS that leaks a private key still only verifies."""
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise UnusableKey(f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}")
    if isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        return key
    raise UnusableKey(f"unsupported key type {type(key).__name__}")


def key_from_jwk(jwk: Mapping[str, Any]) -> VerificationKey:
    """One JWK (RFC 7517 §4) to a verification key; symmetric (``oct``) keys are refused."""
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise UnusableKey(f"unsupported kty {kty!r}")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"key use {use!r} is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not allow verify")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKey("kid is not a string")
    if alg is not None and not isinstance(alg, str):
        raise UnusableKey("alg is not a string")
    try:
        parsed = jwt.PyJWK(dict(jwk))
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise UnusableKey(f"invalid JWK: {type(exc).__name__}") from None
    return VerificationKey(kid=kid, key=_public(parsed.key), alg=alg)


def keys_from_jwks(document: object) -> tuple[list[VerificationKey], int]:
    """Parse a JWKS document (RFC 7517 §5). Returns the usable keys and how many were skipped.

    Keys of unknown types are skipped rather than failing the whole set, so that an
    IdP adding a key type we do not support does not take the issuer down.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UnusableKey("not a JWKS document (no 'keys' list)")
    keys: list[VerificationKey] = []
    skipped = 0
    for item in document["keys"]:
        if not isinstance(item, dict):
            skipped += 1
            continue
        try:
            keys.append(key_from_jwk(item))
        except UnusableKey:
            skipped += 1
    return keys, skipped


def key_from_pem(data: bytes) -> VerificationKey:
    """A PEM public key (SubjectPublicKeyInfo) or certificate."""
    try:
        if b"BEGIN CERTIFICATE" in data:
            from cryptography import x509

            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise UnusableKey("not a PEM public key or certificate") from None
    return VerificationKey(kid=None, key=_public(key))


def select_keys(
    keys: Iterable[VerificationKey], kid: str | None, alg: str
) -> list[VerificationKey]:
    """Candidate keys for a token: the ``kid`` match, or every fitting key when it has none."""
    if kid is None:
        return [k for k in keys if k.fits(alg)]
    return [k for k in keys if k.kid == kid and k.fits(alg)]
