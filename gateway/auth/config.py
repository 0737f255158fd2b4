"""The ``[auth]`` configuration table and its sub-tables (issue 3).

Sections are frozen dataclasses loaded by :mod:`gateway.configload`; cross-field rules
live in each section's ``validate``. Secrets are never inline: shared secrets come
from ``secret_env`` or ``secret_file`` and are read by :func:`read_secret`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import string
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from gateway.configload import ConfigError

TokenSource = Literal["password", "header", "query"]
Preset = Literal["supabase", "firebase", "auth0", "clerk", "oidc"]

# RFC 7518 §3.1 signature algorithms. HMAC is only allowed for an issuer with a shared
# secret, so that a public key can never be used as an HMAC secret (RS/HS confusion).
ASYMMETRIC_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)
HMAC_ALGORITHMS: tuple[str, ...] = ("HS256", "HS384", "HS512")
KNOWN_ALGORITHMS: frozenset[str] = frozenset((*ASYMMETRIC_ALGORITHMS, "ES512", *HMAC_ALGORITHMS))

# Issue 3 §6: the default claim paths of the standard bindings; the first path present wins.
DEFAULT_CLAIMS: dict[str, str | tuple[str, ...]] = {
    "user_id": "sub",
    "email": "email",
    "agent_id": "agent_id",
    "session_id": ("session_id", "sid"),
    "role": "role",
    "org": "org_id",
}

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output; 32 bytes is
# the HS256 minimum, and we apply it to every HS algorithm.
MIN_HMAC_SECRET_BYTES = 32


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> str | None:
    """HTTPS only; plain HTTP is accepted for a loopback host (tests, sidecar IdPs)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and _is_loopback_url(url):
        return None
    return "must be an https:// URL (http:// only for a loopback host)"


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    """One ``[[auth.issuers]]`` entry: a JWT issuer and where its keys come from."""

    issuer: str | None = None
    preset: Preset | None = None
    name: str | None = None
    # supabase: the project ref; firebase: the project id.
    project: str | None = None
    # auth0: the tenant domain; clerk: the Frontend API domain.
    domain: str | None = None
    audiences: tuple[str, ...] = ()
    # Clerk session tokens carry ``azp`` (the origin that asked for them) instead of ``aud``.
    authorized_parties: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ()
    # Key sources: exactly one (a preset supplies one when none is given).
    discovery: bool = False
    jwks_url: str | None = None
    jwks_file: str | None = None
    public_key_file: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    # Per-issuer overrides of [auth.claims] (binding name -> claim path).
    claims: dict[str, str | tuple[str, ...]] = field(default_factory=dict)

    def key_sources(self) -> list[str]:
        sources = [
            name
            for name in ("jwks_url", "jwks_file", "public_key_file", "secret_env", "secret_file")
            if getattr(self, name) is not None
        ]
        if self.discovery:
            sources.append("discovery")
        return sources

    def validate(self) -> tuple[str, str] | None:
        sources = self.key_sources()
        if len(sources) > 1:
            return ("jwks_url", "give exactly one key source, got " + ", ".join(sources))
        if not sources and self.preset is None:
            return (
                "jwks_url",
                "give one key source: discovery, jwks_url, jwks_file, public_key_file, "
                "secret_env or secret_file (or a preset)",
            )
        if self.preset in ("supabase", "firebase") and self.project is None and not self.issuer:
            return ("project", f"preset {self.preset!r} needs project (or issuer)")
        if self.preset in ("auth0", "clerk") and self.domain is None and not self.issuer:
            return ("domain", f"preset {self.preset!r} needs domain (or issuer)")
        if self.preset in (None, "oidc") and not self.issuer:
            return ("issuer", "required key is missing")
        if self.preset == "auth0" and not self.audiences:
            return ("audiences", "auth0 needs the API identifier as audience")
        if self.preset in (None, "oidc") and not self.audiences:
            return ("audiences", "at least one audience is required")
        for alg in self.algorithms:
            if alg not in KNOWN_ALGORITHMS:
                return ("algorithms", f"unknown or refused algorithm {alg!r}")
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        shared = self.secret_env is not None or self.secret_file is not None
        if hmac and not shared:
            return ("algorithms", "HS* algorithms need a shared secret (secret_env/secret_file)")
        if shared and len(hmac) != len(self.algorithms):
            return ("algorithms", "an issuer with a shared secret allows only HS* algorithms")
        if self.jwks_url is not None and (problem := _check_url(self.jwks_url)):
            return ("jwks_url", problem)
        if self.discovery and self.issuer and (problem := _check_url(self.issuer)):
            return ("issuer", "discovery " + problem)
        return None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One ``[[auth.webhooks]]`` entry: an HTTPS endpoint that decides for non-JWT credentials."""

    url: str
    name: str | None = None
    # Only credentials whose MQTT user name matches this glob are sent to this webhook.
    username_pattern: str = "*"
    # A bounded wait: an authentication that cannot be decided in time is refused.
    timeout_s: float = 3.0
    cache_ttl_s: float = 60.0
    cache_max_entries: int = 10_000
    forward_headers: tuple[str, ...] = ()
    # The gateway's own credential for the endpoint, sent as ``Authorization: Bearer``.
    secret_env: str | None = None
    secret_file: str | None = None

    def validate(self) -> tuple[str, str] | None:
        if problem := _check_url(self.url):
            return ("url", problem)
        if self.secret_env is not None and self.secret_file is not None:
            return ("secret_env", "give at most one of secret_env and secret_file")
        if self.timeout_s <= 0:
            return ("timeout_s", "must be positive")
        # Cookies are never a credential: they are what cross-site WebSocket hijacking rides on.
        if any(h.lower() in ("cookie", "cookie2") for h in self.forward_headers):
            return ("forward_headers", "cookies are never forwarded")
        if self.cache_ttl_s < 0:
            return ("cache_ttl_s", "must not be negative")
        return None

    def matches(self, username: str | None) -> bool:
        return fnmatch.fnmatchcase(username or "", self.username_pattern)

    @property
    def label(self) -> str:
        return self.name or (urlsplit(self.url).hostname or "webhook")


@dataclass(frozen=True, slots=True)
class JwksConfig:
    """``[auth.jwks]``: how remote key sets are fetched and refreshed."""

    # Cache-Control max-age is honoured between a floor (an IdP answering max-age=0 must
    # not make us poll it) and a ceiling (rotation is picked up within a day at worst).
    min_refresh_s: float = 60.0
    max_refresh_s: float = 86_400.0
    default_refresh_s: float = 3_600.0
    # Retry delay after a failed fetch: keeps the last good keys and tries again soon.
    retry_s: float = 30.0
    # An unknown kid triggers at most one refetch per issuer in this interval, so a
    # flood of random kids cannot make us hammer the IdP.
    unknown_kid_refetch_s: float = 60.0
    timeout_s: float = 5.0
    # A JWKS document is a few KiB; anything far larger is not one.
    max_bytes: int = 1_048_576

    def validate(self) -> tuple[str, str] | None:
        if self.min_refresh_s > self.max_refresh_s:
            return ("min_refresh_s", "must not exceed max_refresh_s")
        if self.timeout_s <= 0:
            return ("timeout_s", "must be positive")
        return None


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """``[auth.rate_limit]``: a token bucket of failed authentications per source address."""

    enabled: bool = True
    # Ten failures in a row are allowed (a client retrying with a stale token), then one
    # every two seconds: enough for humans, far too slow for guessing.
    burst: int = 10
    refill_per_s: float = 0.5
    # Bounded memory under a spray of source addresses; the least recently seen go first.
    max_sources: int = 100_000
    # IPv6 clients are keyed by their /64: one host usually owns a whole /64.
    ipv6_prefix: int = 64

    def validate(self) -> tuple[str, str] | None:
        if self.burst < 1:
            return ("burst", "must be at least 1")
        if self.refill_per_s <= 0:
            return ("refill_per_s", "must be positive")
        if not 0 <= self.ipv6_prefix <= 128:
            return ("ipv6_prefix", "must be between 0 and 128")
        return None


ClientIdMode = Literal["derive", "require"]


@dataclass(frozen=True, slots=True)
class ClientIdConfig:
    """``[auth.client_id]``: how client ids are kept from being taken over (issue 3 §7)."""

    mode: ClientIdMode = "derive"
    template: str = "{user_id}:{client_id}"

    def placeholders(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]

    def validate(self) -> tuple[str, str] | None:
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            return ("template", f"invalid template: {exc}")
        names = [f for _, f, _, _ in parsed if f is not None]
        for literal, name, spec, conv in parsed:
            if name is not None and (spec or conv or not re.fullmatch(r"[a-z_][a-z0-9_]*", name)):
                return ("template", f"placeholders are plain binding names, got {name!r}")
            del literal
        if "client_id" not in names:
            return ("template", "must contain {client_id}")
        if not [n for n in names if n != "client_id"]:
            return ("template", "must contain an identity binding such as {user_id}")
        if len(names) != len(set(names)):
            return ("template", "each placeholder may appear once")
        # Two placeholders with no literal text between them would make the derived id
        # ambiguous ({a}{b}: "xy" could be "x"+"y" or "xy"+""), i.e. hijackable.
        for i, (literal, _name, _, _) in enumerate(parsed):
            if i > 0 and parsed[i - 1][1] is not None and not literal:
                return ("template", "placeholders must be separated by literal text")
        return None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The ``[auth]`` table."""

    token_sources: tuple[TokenSource, ...] = ("password", "header", "query")
    issuers: tuple[IssuerConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()
    # Merged over DEFAULT_CLAIMS: name only what differs; "" disables a binding.
    claims: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    leeway_s: float = 30.0
    # Tokens from real IdPs are 1-3 KiB; 8 KiB is the usual HTTP header line limit.
    max_token_bytes: int = 8_192
    jwks: JwksConfig = field(default_factory=JwksConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    client_id: ClientIdConfig = field(default_factory=ClientIdConfig)

    def effective_claims(self) -> dict[str, str | tuple[str, ...]]:
        """Binding name -> claim path(s): the defaults of issue 3 §6 with ``claims`` over them."""
        return {**DEFAULT_CLAIMS, **self.claims}

    def validate(self) -> tuple[str, str] | None:
        if not self.token_sources:
            return ("token_sources", "must name at least one source")
        if len(set(self.token_sources)) != len(self.token_sources):
            return ("token_sources", "duplicate source")
        if self.leeway_s < 0 or self.leeway_s > 300:
            return ("leeway_s", "must be between 0 and 300 seconds")
        if self.max_token_bytes < 256:
            return ("max_token_bytes", "must be at least 256")
        if "client_id" in self.claims:
            return ("claims.client_id", "client_id comes from the MQTT CONNECT, not a claim")
        names = [i.name or i.issuer for i in self.issuers if (i.name or i.issuer)]
        if len(names) != len(set(names)):
            return ("issuers", "two issuers with the same name/issuer")
        return None


def read_secret(env: str | None, file: str | None, key: str, config_file: str = "[auth]") -> bytes:
    """Read a secret from an env variable or a file; errors name the key, never the value."""
    if env is not None:
        value = os.environ.get(env)
        if value is None or value == "":
            raise ConfigError(config_file, key, f"environment variable {env} is not set or empty")
        return value.encode()
    if file is not None:
        try:
            with open(file, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConfigError(config_file, key, f"cannot read {file}: {exc.strerror}") from None
        data = data.rstrip(b"\r\n")
        if not data:
            raise ConfigError(config_file, key, f"{file} is empty")
        return data
    raise ConfigError(config_file, key, "no secret source")
