"""Presets and resolution of ``[[auth.issuers]]`` entries into complete issuer settings.

A preset fills in only what the entry leaves unset, so every preset value can be
overridden (tests point ``jwks_url`` at a local server). Issuer URLs follow each
provider's documentation:

- Supabase: ``iss = https://<project>.supabase.co/auth/v1``, JWKS under
  ``/.well-known/jwks.json`` of it, ``aud = authenticated``; the legacy project secret
  (HS256) when ``secret_env``/``secret_file`` is given.
- Firebase: ``iss = https://securetoken.google.com/<project>``, ``aud = <project>``,
  RS256 keys from Google's securetoken service account JWKS.
- Auth0: ``iss = https://<domain>/`` (with the trailing slash), JWKS at
  ``https://<domain>/.well-known/jwks.json``.
- Clerk: ``iss = https://<domain>``, JWKS at ``https://<domain>/.well-known/jwks.json``;
  session tokens carry ``azp`` rather than ``aud``.
- OIDC: keys from ``{issuer}/.well-known/openid-configuration`` → ``jwks_uri``
  (OpenID Connect Discovery 1.0 §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from gateway.auth.config import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    IssuerConfig,
)

FIREBASE_JWKS_URL = (
    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
)
OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"

KeySourceKind = Literal["discovery", "jwks_url", "jwks_file", "public_key_file", "secret"]


@dataclass(frozen=True, slots=True)
class ResolvedIssuer:
    """An issuer with every preset default applied; the verifier's view of one issuer."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    authorized_parties: tuple[str, ...]
    algorithms: tuple[str, ...]
    key_source: KeySourceKind
    # URL (discovery document or JWKS) or file path; the env/file of a shared secret.
    key_location: str
    secret_env: str | None
    secret_file: str | None
    claims: Mapping[str, str | tuple[str, ...]]

    @property
    def is_remote(self) -> bool:
        return self.key_source in ("discovery", "jwks_url")


def _preset_issuer(cfg: IssuerConfig) -> str:
    if cfg.issuer:
        return cfg.issuer
    if cfg.preset == "supabase":
        return f"https://{cfg.project}.supabase.co/auth/v1"
    if cfg.preset == "firebase":
        return f"https://securetoken.google.com/{cfg.project}"
    if cfg.preset == "auth0":
        return f"https://{cfg.domain}/"
    if cfg.preset == "clerk":
        return f"https://{cfg.domain}"
    raise ValueError("issuer is required")  # excluded by IssuerConfig.validate


def _preset_audiences(cfg: IssuerConfig) -> tuple[str, ...]:
    if cfg.audiences:
        return cfg.audiences
    if cfg.preset == "supabase":
        return ("authenticated",)
    if cfg.preset == "firebase" and cfg.project:
        return (cfg.project,)
    return ()


def _preset_key_source(cfg: IssuerConfig, issuer: str) -> tuple[KeySourceKind, str]:
    if cfg.secret_env is not None or cfg.secret_file is not None:
        return "secret", cfg.secret_env or cfg.secret_file or ""
    if cfg.jwks_url is not None:
        return "jwks_url", cfg.jwks_url
    if cfg.jwks_file is not None:
        return "jwks_file", cfg.jwks_file
    if cfg.public_key_file is not None:
        return "public_key_file", cfg.public_key_file
    if cfg.discovery or cfg.preset == "oidc":
        return "discovery", issuer.rstrip("/") + OIDC_DISCOVERY_PATH
    if cfg.preset == "firebase":
        return "jwks_url", FIREBASE_JWKS_URL
    if cfg.preset == "supabase":
        return "jwks_url", issuer.rstrip("/") + "/.well-known/jwks.json"
    if cfg.preset in ("auth0", "clerk"):
        host = f"https://{cfg.domain}" if cfg.domain else issuer.rstrip("/")
        return "jwks_url", host + "/.well-known/jwks.json"
    raise ValueError("no key source")  # excluded by IssuerConfig.validate


def _preset_algorithms(cfg: IssuerConfig, key_source: KeySourceKind) -> tuple[str, ...]:
    if cfg.algorithms:
        return cfg.algorithms
    if key_source == "secret":
        # Supabase's legacy project secret signs HS256 only.
        return ("HS256",) if cfg.preset == "supabase" else HMAC_ALGORITHMS
    if cfg.preset in ("firebase", "auth0", "clerk"):
        return ("RS256",)
    if cfg.preset == "supabase":
        # Supabase asymmetric signing keys are ES256 (default) or RS256.
        return ("ES256", "RS256")
    return ASYMMETRIC_ALGORITHMS


def resolve_issuer(
    cfg: IssuerConfig, global_claims: Mapping[str, str | tuple[str, ...]]
) -> ResolvedIssuer:
    """Apply the preset to an issuer entry that passed ``IssuerConfig.validate``."""
    issuer = _preset_issuer(cfg)
    kind, location = _preset_key_source(cfg, issuer)
    claims = dict(global_claims)
    claims.update(cfg.claims)
    return ResolvedIssuer(
        name=cfg.name or issuer,
        issuer=issuer,
        audiences=_preset_audiences(cfg),
        authorized_parties=cfg.authorized_parties,
        algorithms=_preset_algorithms(cfg, kind),
        key_source=kind,
        key_location=location,
        secret_env=cfg.secret_env,
        secret_file=cfg.secret_file,
        claims=MappingProxyType(claims),
    )
