"""A development identity provider: a signing key pair, its JWKS, and tokens (issue 3 §11).

Not for production: the private key sits in a file next to the gateway. The issuer and
audience below are what ``mqttgate token`` uses by default and what the sample config
trusts via ``jwks_file = "certs/dev-jwks.json"``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

DEV_ISSUER = "https://mqttgate.dev.local"
DEV_AUDIENCE = "mqttgate"
DEV_PRIVATE_KEY = "dev-signing.pem"
DEV_PUBLIC_KEY = "dev-signing.pub.pem"
DEV_JWKS = "dev-jwks.json"

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_TTL = re.compile(r"^(\d+)([smhd]?)$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` → seconds."""
    m = _TTL.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"invalid ttl {text!r} (use e.g. 3600, 30m, 1h, 1d)")
    return int(m.group(1)) * _TTL_UNITS[m.group(2)]


def algorithm_for(key: SigningKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    return "EdDSA"


def public_jwk(key: SigningKey, kid: str | None = None) -> dict[str, Any]:
    """The public JWK with ``kid`` (default: the RFC 7638 thumbprint), ``use`` and ``alg``."""
    alg = algorithm_for(key)
    algo = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = orjson.loads(algo.to_jwk(key.public_key()))
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    thumbprint = hashlib.sha256(orjson.dumps(members, option=orjson.OPT_SORT_KEYS)).digest()
    jwk["kid"] = kid or base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
    jwk["use"] = "sig"
    jwk["alg"] = alg
    return jwk


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError("unsupported private key type (use RSA, EC or Ed25519)")
    return key


def write_dev_keys(out: str | os.PathLike[str], *, force: bool = False) -> dict[str, Path]:
    """Write an ES256 key pair and its JWKS into ``out``; the private key is mode 0600."""
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "private": directory / DEV_PRIVATE_KEY,
        "public": directory / DEV_PUBLIC_KEY,
        "jwks": directory / DEV_JWKS,
    }
    if paths["private"].exists() and not force:
        raise FileExistsError(f"{paths['private']} exists (use --force to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if paths["private"].exists():
        paths["private"].unlink()
    # Created 0600 from the start: never world-readable, not even for a moment.
    fd = os.open(paths["private"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    paths["public"].write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    paths["jwks"].write_bytes(orjson.dumps({"keys": [public_jwk(key)]}, option=orjson.OPT_INDENT_2))
    return paths


def mint_token(
    key: SigningKey | bytes,
    *,
    issuer: str = DEV_ISSUER,
    audience: str | list[str] | None = DEV_AUDIENCE,
    subject: str | None = None,
    ttl_s: float = 3600,
    claims: Mapping[str, Any] | None = None,
    kid: str | None = None,
    algorithm: str | None = None,
    headers: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed JWT. ``kid`` defaults to the key's thumbprint (what ``keys dev`` publishes)."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"iss": issuer, "iat": issued, "exp": int(issued + ttl_s)}
    payload["jti"] = secrets.token_urlsafe(12)
    if audience is not None:
        payload["aud"] = audience
    if subject is not None:
        payload["sub"] = subject
    payload.update(claims or {})
    header: dict[str, Any] = dict(headers or {})
    if isinstance(key, bytes):
        alg = algorithm or "HS256"
        if kid is not None:
            header["kid"] = kid
    else:
        alg = algorithm or algorithm_for(key)
        header["kid"] = kid or public_jwk(key)["kid"]
    return jwt.encode(payload, key, algorithm=alg, headers=header)
