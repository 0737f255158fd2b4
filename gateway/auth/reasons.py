"""Why an authentication failed, and the CONNACK/DISCONNECT reason code each cause maps to.

Reason strings are a closed vocabulary: they go into audit records and may go into a
v5 Reason String, so they never carry token material.
"""

from __future__ import annotations

from enum import StrEnum

# MQTT 5.0 §3.2.2.2 CONNACK Reason Codes.
V5_CLIENT_ID_NOT_VALID = 0x85
V5_BAD_USERNAME_OR_PASSWORD = 0x86
V5_NOT_AUTHORIZED = 0x87
V5_SERVER_UNAVAILABLE = 0x88
V5_BAD_AUTHENTICATION_METHOD = 0x8C
V5_CONNECTION_RATE_EXCEEDED = 0x9F
# MQTT 3.1.1 §3.2.2.3 CONNACK return codes.
V3_IDENTIFIER_REJECTED = 0x02
V3_SERVER_UNAVAILABLE = 0x03
V3_BAD_USERNAME_OR_PASSWORD = 0x04
V3_NOT_AUTHORIZED = 0x05
# MQTT 5.0 §3.14.2.1 DISCONNECT Reason Codes used after a failed re-authentication.
V5_DISCONNECT_NOT_AUTHORIZED = 0x87
V5_DISCONNECT_BAD_AUTHENTICATION_METHOD = 0x8C
# MQTT 5.0 §3.14.2.1: sent when the token's exp passes without re-authentication.
V5_DISCONNECT_MAXIMUM_CONNECT_TIME = 0xA0
# MQTT 5.0 §3.15.2.1 AUTH Reason Codes.
AUTH_SUCCESS = 0x00
AUTH_CONTINUE = 0x18
AUTH_REAUTHENTICATE = 0x19


class Reason(StrEnum):
    """The closed set of authentication failure reasons (issue 3 §5, §8, §9, §10)."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KID = "unknown_kid"
    AUDIENCE = "audience"
    AUTHORIZED_PARTY = "authorized_party"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    CRIT_UNSUPPORTED = "crit_unsupported"
    MISSING_CLAIM = "missing_claim"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    NO_KEYS = "no_keys"
    NO_TOKEN = "no_token"
    TOKEN_MISMATCH = "token_mismatch"
    BAD_AUTH_METHOD = "bad_auth_method"
    RATE_LIMITED = "rate_limited"
    WEBHOOK_UNAVAILABLE = "webhook_unavailable"
    WEBHOOK_DENIED = "webhook_denied"
    REAUTH_SUBJECT_CHANGED = "reauth_subject_changed"
    REAUTH_ISSUER_CHANGED = "reauth_issuer_changed"
    REAUTH_ORG_CHANGED = "reauth_org_changed"
    CLIENT_ID_MISMATCH = "client_id_mismatch"
    CLIENT_ID_UNAVAILABLE = "client_id_unavailable"


# Credentials that are present but wrong: "the data in the user name or password is
# malformed or not authorized" (v5 0x86, v3.1.1 0x04).
_BAD_CREDENTIALS = frozenset(
    {
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
        Reason.BAD_SIGNATURE,
        Reason.UNKNOWN_ISSUER,
        Reason.UNKNOWN_KID,
        Reason.AUDIENCE,
        Reason.AUTHORIZED_PARTY,
        Reason.ALG_NOT_ALLOWED,
        Reason.CRIT_UNSUPPORTED,
        Reason.MISSING_CLAIM,
        Reason.MALFORMED,
        Reason.TOO_LARGE,
        Reason.TOKEN_MISMATCH,
    }
)


def connack_v5(reason: Reason) -> int:
    """MQTT 5.0 §3.2.2.2 reason code for a refused CONNECT."""
    if reason in _BAD_CREDENTIALS:
        return V5_BAD_USERNAME_OR_PASSWORD
    if reason is Reason.BAD_AUTH_METHOD:
        return V5_BAD_AUTHENTICATION_METHOD
    if reason is Reason.RATE_LIMITED:
        return V5_CONNECTION_RATE_EXCEEDED
    # The issuer's keys or the webhook cannot be reached: "the Server is not available",
    # so that the client retries later instead of discarding its credentials.
    if reason in (Reason.WEBHOOK_UNAVAILABLE, Reason.NO_KEYS):
        return V5_SERVER_UNAVAILABLE
    if reason in (Reason.CLIENT_ID_MISMATCH, Reason.CLIENT_ID_UNAVAILABLE):
        return V5_CLIENT_ID_NOT_VALID
    return V5_NOT_AUTHORIZED


def connack_v3(reason: Reason) -> int:
    """MQTT 3.1.1 §3.2.2.3 return code for a refused CONNECT."""
    if reason in _BAD_CREDENTIALS:
        return V3_BAD_USERNAME_OR_PASSWORD
    if reason in (Reason.WEBHOOK_UNAVAILABLE, Reason.NO_KEYS):
        return V3_SERVER_UNAVAILABLE
    if reason in (Reason.CLIENT_ID_MISMATCH, Reason.CLIENT_ID_UNAVAILABLE):
        return V3_IDENTIFIER_REJECTED
    return V3_NOT_AUTHORIZED


def disconnect_v5(reason: Reason) -> int:
    """MQTT 5.0 §3.14.2.1 reason code for a DISCONNECT after re-authentication fails (§4.12.1)."""
    if reason is Reason.BAD_AUTH_METHOD:
        return V5_DISCONNECT_BAD_AUTHENTICATION_METHOD
    return V5_DISCONNECT_NOT_AUTHORIZED
