"""Authentication: JWT issuers, JWKS, webhooks, claim bindings (issue 3)."""

from gateway.auth.authenticator import (
    AUTH_METHOD_JWT,
    Authenticator,
    AuthResult,
    AuthStats,
    Credentials,
)
from gateway.auth.clientid import ClientIdDecision, ClientIdRefused
from gateway.auth.config import (
    AuthConfig,
    ClientIdConfig,
    IssuerConfig,
    JwksConfig,
    RateLimitConfig,
    WebhookConfig,
)
from gateway.auth.reasons import Reason

__all__ = [
    "AUTH_METHOD_JWT",
    "AuthConfig",
    "AuthResult",
    "AuthStats",
    "Authenticator",
    "ClientIdConfig",
    "ClientIdDecision",
    "ClientIdRefused",
    "Credentials",
    "IssuerConfig",
    "JwksConfig",
    "RateLimitConfig",
    "Reason",
    "WebhookConfig",
]
