"""JWT verification in two pure steps: an unverified peek, then a check against chosen keys.

RFC 7519 (JWT) §7.2 and RFC 8725 (JWT Best Current Practices): the header ``alg`` must
be on the issuer's allowlist and fit the key (§3.1, §3.2), ``crit`` extensions we do not
understand are refused (RFC 7515 §4.1.11), and the issuer is chosen from ``iss`` before
any key is looked up (§3.8), so that an unknown issuer costs no network request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from gateway.auth.issuers import ResolvedIssuer
from gateway.auth.keys import VerificationKey
from gateway.auth.reasons import Reason

# A JWS Compact Serialization has exactly three base64url parts (RFC 7515 §7.1).
_JWS_PARTS = 3


@dataclass(frozen=True, slots=True)
class Peek:
    """What the token says about itself before any signature is checked."""

    alg: str
    kid: str | None
    iss: str


class Refused(Exception):
    """A verification failure; carries only a reason from the closed vocabulary."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == _JWS_PARTS - 1


def _b64_json(part: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise Refused(Reason.MALFORMED) from None


def peek(token: str, max_bytes: int) -> Peek:
    """Parse header and payload without verifying; refuse what no issuer could accept."""
    if len(token.encode()) > max_bytes:
        raise Refused(Reason.TOO_LARGE)
    parts = token.split(".")
    if len(parts) != _JWS_PARTS or not all(parts):
        raise Refused(Reason.MALFORMED)
    header = _b64_json(parts[0])
    payload = _b64_json(parts[1])
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise Refused(Reason.MALFORMED)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise Refused(Reason.MALFORMED)
    if alg.lower() == "none":
        raise Refused(Reason.ALG_NOT_ALLOWED)
    # RFC 7515 §4.1.11: a recipient that does not understand a critical extension must
    # reject the JWS; we understand none (b64=false payloads included).
    if "crit" in header or "b64" in header:
        raise Refused(Reason.CRIT_UNSUPPORTED)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Refused(Reason.MALFORMED)
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss:
        raise Refused(Reason.UNKNOWN_ISSUER)
    return Peek(alg=alg, kid=kid, iss=iss)


def check_alg(p: Peek, issuer: ResolvedIssuer) -> None:
    if p.alg not in issuer.algorithms:
        raise Refused(Reason.ALG_NOT_ALLOWED)


def _map_error(exc: jwt.PyJWTError) -> Reason:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return Reason.EXPIRED
    if isinstance(exc, jwt.ImmatureSignatureError):
        return Reason.NOT_YET_VALID
    if isinstance(exc, jwt.InvalidSignatureError):
        return Reason.BAD_SIGNATURE
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Reason.AUDIENCE if exc.claim == "aud" else Reason.MISSING_CLAIM
    if isinstance(exc, jwt.InvalidAudienceError):
        return Reason.AUDIENCE
    if isinstance(exc, jwt.InvalidIssuerError):
        return Reason.UNKNOWN_ISSUER
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return Reason.ALG_NOT_ALLOWED
    return Reason.MALFORMED


def verify_with_keys(
    token: str,
    p: Peek,
    issuer: ResolvedIssuer,
    keys: Sequence[VerificationKey],
    leeway_s: float,
) -> dict[str, Any]:
    """Verify ``token`` against candidate keys that already fit ``p.alg``; return its claims.

    Several candidates occur only for a token without ``kid``; the first key whose
    signature matches decides, and its temporal and audience errors are reported.
    """
    if not keys:
        raise Refused(Reason.UNKNOWN_KID)
    options: dict[str, Any] = {
        "require": ["exp", "iss"],
        "verify_aud": bool(issuer.audiences),
    }
    last = Reason.BAD_SIGNATURE
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[p.alg],
                audience=list(issuer.audiences) or None,
                issuer=issuer.issuer,
                leeway=leeway_s,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.PyJWTError as exc:
            last = _map_error(exc)
            if last is Reason.BAD_SIGNATURE:
                continue
            raise Refused(last) from None
        check_claim_types(claims, issuer)
        return claims
    raise Refused(last)


def check_claim_types(claims: Mapping[str, Any], issuer: ResolvedIssuer) -> None:
    """``sub`` must be a string when present; ``azp`` must be allowed when configured."""
    sub = claims.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise Refused(Reason.MALFORMED)
    if issuer.authorized_parties and claims.get("azp") not in issuer.authorized_parties:
        raise Refused(Reason.AUTHORIZED_PARTY)
