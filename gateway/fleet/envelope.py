"""The signed policy envelope: the policy text, its version, when and by which key.

Wire format (JSON, UTF-8)::

    {"format": "mqttgate-policy/1", "policy": "<policy JSON text>", "version": "<content
     version>", "issued_at": 1700000000.0, "key_id": "<16 hex>", "signature": "<base64url>"}

An org's own policy (``[tenancy]``) carries ``"org": "<org>"`` as well, and is published on
``<control topic>/orgs/<org>``. The signature is Ed25519 (RFC 8032) over the canonical JSON
of every field but ``signature`` (keys sorted, no spaces), ``org`` included when present:
an org's envelope cannot pass for the default policy or for another org's. ``key_id`` is
the first 16 hex digits of the SHA-256 of the raw public key, so a verifier can tell which
trusted key to use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "mqttgate-policy/1"
SIGNED_FIELDS = ("format", "policy", "version", "issued_at", "key_id")
# A policy is at most 4 MiB (the admin API's limit); the envelope adds base64 and JSON.
MAX_ENVELOPE_BYTES = 6 * 1024 * 1024

# Refusal reasons (closed vocabulary: audit records).
UNSIGNED = "unsigned"
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
FROM_THE_FUTURE = "issued_in_future"


class EnvelopeRefused(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    text: str
    version: str
    issued_at: float
    key_id: str
    # The org whose own policy this is; None for the default policy.
    org: str | None = None


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signed_bytes(fields: dict[str, object]) -> bytes:
    signed = {k: fields[k] for k in SIGNED_FIELDS}
    if "org" in fields:
        signed["org"] = fields["org"]
    return orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)


def sign_policy(
    text: str,
    version: str,
    private_key: Ed25519PrivateKey,
    *,
    issued_at: float | None = None,
    org: str | None = None,
) -> bytes:
    fields: dict[str, object] = {
        "format": FORMAT,
        "policy": text,
        "version": version,
        "issued_at": float(time.time() if issued_at is None else issued_at),
        "key_id": key_id(private_key.public_key()),
    }
    if org is not None:
        fields["org"] = org
    signature = private_key.sign(_signed_bytes(fields))
    fields["signature"] = base64.urlsafe_b64encode(signature).decode().rstrip("=")
    return orjson.dumps(fields)


def verify_envelope(
    data: bytes, trusted: dict[str, Ed25519PublicKey], *, now: float, max_skew_s: float
) -> SignedPolicy:
    """The signed policy in ``data``, or :class:`EnvelopeRefused` naming why not."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeRefused(MALFORMED, "envelope too large")
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise EnvelopeRefused(MALFORMED, "not JSON") from None
    if not isinstance(raw, dict):
        raise EnvelopeRefused(MALFORMED, "not a JSON object")
    if raw.get("format") != FORMAT or "signature" not in raw:
        # A bare policy document, or anything else without our signature.
        raise EnvelopeRefused(UNSIGNED, "no signed envelope")
    text, version, issued, kid, sig = (
        raw.get("policy"),
        raw.get("version"),
        raw.get("issued_at"),
        raw.get("key_id"),
        raw.get("signature"),
    )
    if not (
        isinstance(text, str)
        and isinstance(version, str)
        and isinstance(kid, str)
        and isinstance(sig, str)
        and isinstance(issued, int | float)
        and not isinstance(issued, bool)
        and isinstance(raw.get("org", ""), str)
    ):
        raise EnvelopeRefused(MALFORMED, "missing or mistyped fields")
    public_key = trusted.get(kid)
    if public_key is None:
        raise EnvelopeRefused(UNKNOWN_KEY, f"key {kid!r} is not trusted")
    try:
        signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        public_key.verify(signature, _signed_bytes(raw))
    except (InvalidSignature, binascii.Error, ValueError):
        raise EnvelopeRefused(BAD_SIGNATURE, "signature does not verify") from None
    if issued > now + max_skew_s:
        raise EnvelopeRefused(FROM_THE_FUTURE, "issued_at is in the future")
    return SignedPolicy(text, version, float(issued), kid, raw.get("org"))


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def write_key_pair(directory: Path, name: str = "fleet") -> tuple[Path, Path]:
    """A new signing key (0600) and its public key, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = directory / f"{name}.key"
    public = directory / f"{name}.pub"
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
