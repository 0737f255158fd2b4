"""The authenticator the session core calls at CONNECT, at the WebSocket upgrade and on AUTH.

Order of a CONNECT authentication (issue 3 §1-§10):

1. the source address's failure bucket (no work at all for a limited source);
2. the token from the configured carriers (all present copies must be identical);
3. a JWT whose ``iss`` is a configured issuer is verified against that issuer's keys;
4. otherwise a webhook whose ``username_pattern`` matches decides;
5. otherwise the JWT failure (or ``no_token``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp

from gateway.auth.claims import identity_from_claims
from gateway.auth.clientid import ClientIdDecision, ClientIdPolicy, ClientIdRefused
from gateway.auth.config import AuthConfig
from gateway.auth.issuers import ResolvedIssuer, resolve_issuer
from gateway.auth.jwks import KeySet, make_key_set
from gateway.auth.keys import select_keys
from gateway.auth.ratelimit import FailureLimiter
from gateway.auth.reasons import Reason, connack_v3, connack_v5, disconnect_v5
from gateway.auth.tokencache import Verified, VerifiedTokenCache
from gateway.auth.verify import Refused, check_alg, looks_like_jwt, peek, verify_with_keys
from gateway.auth.webhook import Webhook, WebhookRequest
from gateway.identity import Identity

log = logging.getLogger("gateway.auth")

# MQTT 5.0 §4.12: the Authentication Method the gateway understands (AUTH 0x19 carries a JWT).
AUTH_METHOD_JWT = "jwt"

# A token without ``kid`` is tried against every key that fits its alg, up to this many;
# real key sets hold 1-4 keys (current, next, previous).
MAX_KEYS_WITHOUT_KID = 4


@dataclass(frozen=True, slots=True)
class Credentials:
    """Everything a CONNECT (and its WebSocket upgrade) offers as proof of identity."""

    password: bytes | None
    username: str | None
    header_token: str | None
    query_token: str | None
    client_id: str
    remote_address: str
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    protocol_level: int = 4
    # MQTT 5.0 §3.1.2.11.9/10 Authentication Method and Data of CONNECT, if any. With
    # method "jwt" the data is one more token carrier (and enables AUTH 0x19 later).
    auth_method: str | None = None
    auth_data: bytes | None = None

    def __repr__(self) -> str:  # never print the secrets
        return (
            f"Credentials(client_id={self.client_id!r}, username={self.username!r}, "
            f"remote_address={self.remote_address!r}, protocol_level={self.protocol_level})"
        )


@dataclass(frozen=True, slots=True)
class AuthResult:
    """An authentication decision. ``identity`` is set exactly when ``ok``."""

    identity: Identity | None
    reason: Reason | None
    issuer: str | None = None
    method: str | None = None  # "jwt" or "webhook:<name>"

    @property
    def ok(self) -> bool:
        return self.reason is None and self.identity is not None

    @property
    def connack_v5(self) -> int | None:
        return None if self.reason is None else connack_v5(self.reason)

    @property
    def connack_v3(self) -> int | None:
        return None if self.reason is None else connack_v3(self.reason)

    @property
    def disconnect_v5(self) -> int | None:
        """For a failed v5 re-authentication (MQTT 5.0 §4.12.1)."""
        return None if self.reason is None else disconnect_v5(self.reason)

    @property
    def http_status(self) -> int | None:
        """For a refused upgrade: 429 rate limited, 503 keys/webhook out, else 401."""
        if self.reason is None:
            return None
        if self.reason is Reason.RATE_LIMITED:
            return 429
        if self.reason in (Reason.NO_KEYS, Reason.WEBHOOK_UNAVAILABLE):
            return 503
        return 401


def _fail(reason: Reason, issuer: str | None = None) -> AuthResult:
    return AuthResult(None, reason, issuer)


@dataclass(slots=True)
class AuthStats:
    """Counters for the metrics layer (read them; the authenticator only adds)."""

    attempts: int = 0
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    reauth_attempts: int = 0
    reauth_successes: int = 0


class Authenticator:
    """Verifies credentials against the configured issuers and webhooks."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        self._http: aiohttp.ClientSession | None = None
        self.issuers: dict[str, ResolvedIssuer] = {}
        self.key_sets: dict[str, KeySet] = {}
        for entry in config.issuers:
            issuer = resolve_issuer(entry, config.effective_claims())
            self.issuers[issuer.issuer] = issuer
            self.key_sets[issuer.issuer] = make_key_set(issuer, config.jwks, self._session, clock)
        self.webhooks = [Webhook(w, self._session, clock) for w in config.webhooks]
        self.limiter = FailureLimiter(config.rate_limit, clock)
        self.client_ids = ClientIdPolicy(config.client_id)
        self.stats = AuthStats()
        self.token_cache = VerifiedTokenCache()

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # No cookies (they are never credentials) and no proxy environment: keys
            # and webhooks are fetched from exactly the configured URLs.
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._http

    async def start(self) -> None:
        """Fetch every remote key set once; an IdP that is down is logged and marked stale."""
        await asyncio.gather(*(ks.start() for ks in self.key_sets.values()))

    async def close(self) -> None:
        await asyncio.gather(*(ks.close() for ks in self.key_sets.values()))
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> Authenticator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- tokens ------------------------------------------------------------------------

    def _select_token(self, creds: Credentials) -> tuple[str | None, Reason | None]:
        """The token from the configured carriers, in order; copies must agree (issue 3 §1)."""
        found: list[str] = []
        for source in self.config.token_sources:
            if source == "password" and creds.password:
                try:
                    found.append(creds.password.decode("utf-8"))
                except UnicodeDecodeError:
                    continue
            elif source == "header" and creds.header_token:
                found.append(creds.header_token)
            elif source == "query" and creds.query_token:
                found.append(creds.query_token)
        if creds.auth_method == AUTH_METHOD_JWT and creds.auth_data:
            try:
                found.append(creds.auth_data.decode("utf-8"))
            except UnicodeDecodeError:
                return None, Reason.MALFORMED
        if not found:
            return None, None
        if any(t != found[0] for t in found[1:]):
            return None, Reason.TOKEN_MISMATCH
        return found[0], None

    def _key_live(self, entry: Verified) -> bool:
        key_set = self.key_sets.get(entry.issuer)
        return key_set is not None and any(k.key is entry.key for k in key_set.keys)

    async def _verify_jwt(self, token: str) -> tuple[ResolvedIssuer, dict[str, Any]]:
        digest = VerifiedTokenCache.digest(token)
        hit = self.token_cache.get(digest, self._wall(), self._key_live)
        if hit is not None:
            return self.issuers[hit.issuer], hit.claims
        issuer, claims, key = await self._verify_uncached(token)
        exp = claims.get("exp")
        if key is not None and isinstance(exp, int | float) and not isinstance(exp, bool):
            self.token_cache.put(
                digest, Verified(issuer.issuer, claims, float(exp) + self.config.leeway_s, key)
            )
        return issuer, claims

    async def _verify_uncached(
        self, token: str
    ) -> tuple[ResolvedIssuer, dict[str, Any], object | None]:
        p = peek(token, self.config.max_token_bytes)
        issuer = self.issuers.get(p.iss)
        if issuer is None:
            raise Refused(Reason.UNKNOWN_ISSUER)
        check_alg(p, issuer)
        key_set = self.key_sets[issuer.issuer]
        candidates = select_keys(key_set.keys, p.kid, p.alg)
        if not candidates and p.kid is not None and await key_set.on_unknown_kid():
            candidates = select_keys(key_set.keys, p.kid, p.alg)
        if not candidates:
            raise Refused(Reason.UNKNOWN_KID if key_set.loaded else Reason.NO_KEYS)
        if p.kid is None and len(candidates) > MAX_KEYS_WITHOUT_KID:
            # Without a kid every fitting key is tried; a large key set would turn one
            # token into many signature checks.
            raise Refused(Reason.UNKNOWN_KID)
        claims = verify_with_keys(token, p, issuer, candidates, self.config.leeway_s)
        # Remembered only when one key can have verified it (a token with a kid).
        return issuer, claims, candidates[0].key if len(candidates) == 1 else None

    def _identity(
        self, issuer: ResolvedIssuer, claims: Mapping[str, Any], client_id: str | None
    ) -> Identity:
        return identity_from_claims(
            claims, issuer.claims, issuer=issuer.issuer, client_id=client_id
        )

    # -- public API --------------------------------------------------------------------

    async def authenticate(self, creds: Credentials) -> AuthResult:
        """Decide a CONNECT. Failures count against the source's rate-limit bucket."""
        self.stats.attempts += 1
        if not self.limiter.allowed(creds.remote_address):
            self.stats.rate_limited += 1
            self.stats.failures[Reason.RATE_LIMITED.value] += 1
            return _fail(Reason.RATE_LIMITED)
        result = await self._authenticate(creds)
        self._record(result, creds.remote_address)
        return result

    def _record(self, result: AuthResult, remote_address: str | None) -> None:
        if result.ok:
            self.stats.successes += 1
            return
        assert result.reason is not None
        self.stats.failures[result.reason.value] += 1
        if remote_address is not None:
            self.limiter.record_failure(remote_address)
        log.info(
            "auth_failed reason=%s issuer=%s remote=%s",
            result.reason.value,
            result.issuer,
            remote_address,
        )

    async def _authenticate(self, creds: Credentials) -> AuthResult:
        if creds.auth_method is not None and creds.auth_method != AUTH_METHOD_JWT:
            return _fail(Reason.BAD_AUTH_METHOD)
        token, problem = self._select_token(creds)
        if problem is not None:
            return _fail(problem)
        jwt_failure: Refused | None = None
        if token is not None and looks_like_jwt(token):
            try:
                issuer, claims = await self._verify_jwt(token)
            except Refused as exc:
                jwt_failure = exc
            else:
                return AuthResult(
                    self._identity(issuer, claims, creds.client_id),
                    None,
                    issuer.issuer,
                    AUTH_METHOD_JWT,
                )
        # A token of a configured issuer that failed is final: a webhook must not get a
        # second chance to accept what the issuer's keys refused.
        if jwt_failure is not None and jwt_failure.reason is not Reason.UNKNOWN_ISSUER:
            return _fail(jwt_failure.reason)
        webhook = next((w for w in self.webhooks if w.cfg.matches(creds.username)), None)
        if webhook is not None:
            return await self._ask_webhook(webhook, creds, token)
        if jwt_failure is not None:
            return _fail(jwt_failure.reason)
        if token is not None:
            # Something that is not a JWT, and no webhook to ask.
            return _fail(Reason.MALFORMED)
        return _fail(Reason.NO_TOKEN)

    async def _ask_webhook(
        self, webhook: Webhook, creds: Credentials, token: str | None
    ) -> AuthResult:
        password = creds.password if creds.password else (token.encode() if token else None)
        answer = await webhook.ask(
            WebhookRequest(
                client_id=creds.client_id,
                username=creds.username,
                password=password,
                remote_address=creds.remote_address,
                headers=creds.headers,
            )
        )
        label = f"webhook:{webhook.cfg.label}"
        if answer.claims is None:
            assert answer.reason is not None
            return AuthResult(None, answer.reason, label, "webhook")
        exp = answer.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= self._wall():
            return AuthResult(None, Reason.EXPIRED, label, "webhook")
        identity = identity_from_claims(
            answer.claims, self.config.effective_claims(), issuer=label, client_id=creds.client_id
        )
        return AuthResult(identity, None, label, "webhook")

    async def reauthenticate(self, previous: Identity, token: str) -> AuthResult:
        """MQTT v5 AUTH 0x19 with method ``jwt`` (MQTT 5.0 §4.12.1): a fresh token for the
        same ``sub``, issuer and ``org``. The ``client_id`` binding is carried over."""
        self.stats.reauth_attempts += 1
        try:
            issuer, claims = await self._verify_jwt(token)
        except Refused as exc:
            result = _fail(exc.reason, previous.issuer)
            self._record(result, None)
            return result
        identity = self._identity(issuer, claims, None)
        reason: Reason | None = None
        if issuer.issuer != previous.issuer:
            reason = Reason.REAUTH_ISSUER_CHANGED
        elif identity.subject != previous.subject:
            reason = Reason.REAUTH_SUBJECT_CHANGED
        elif identity.binding("org") != previous.binding("org"):
            reason = Reason.REAUTH_ORG_CHANGED
        if reason is not None:
            result = _fail(reason, issuer.issuer)
            self._record(result, None)
            return result
        client_id = previous.binding("client_id")
        if client_id.present and client_id.values:
            identity = identity.with_client_id(client_id.values[0])
        self.stats.reauth_successes += 1
        return AuthResult(identity, None, issuer.issuer, AUTH_METHOD_JWT)

    async def check_upgrade_token(
        self,
        header_token: str | None,
        query_token: str | None,
        remote_address: str | None = None,
    ) -> AuthResult | None:
        """Check a token on the WebSocket upgrade, so that a bad one gets HTTP 401 before the
        WebSocket opens (issue 3 §8). None when the upgrade carries no token (the CONNECT
        password may still); a result otherwise (``http_status`` says what to answer)."""
        sources = self.config.token_sources
        header = header_token if "header" in sources else None
        query = query_token if "query" in sources else None
        if not header and not query:
            return None
        if remote_address is not None and not self.limiter.allowed(remote_address):
            self.stats.rate_limited += 1
            return _fail(Reason.RATE_LIMITED)
        if header and query and header != query:
            result = _fail(Reason.TOKEN_MISMATCH)
        else:
            token = header or query or ""
            if not looks_like_jwt(token) and self.webhooks:
                return None  # an opaque token is the webhook's to judge, at CONNECT
            try:
                issuer, claims = await self._verify_jwt(token)
            except Refused as exc:
                if exc.reason is Reason.UNKNOWN_ISSUER and self.webhooks:
                    return None
                result = _fail(exc.reason)
            else:
                result = AuthResult(
                    self._identity(issuer, claims, None), None, issuer.issuer, AUTH_METHOD_JWT
                )
        if not result.ok:
            self.stats.failures[result.reason.value if result.reason else "?"] += 1
            if remote_address is not None:
                self.limiter.record_failure(remote_address)
        return result

    # -- client ids --------------------------------------------------------------------

    def decide_client_id(self, identity: Identity, client_id: str) -> ClientIdDecision:
        return self.client_ids.decide(identity, client_id)

    def upstream_client_id(self, identity: Identity, client_id: str) -> str:
        """The client id to send upstream; raises :class:`ClientIdRefused` (v5 0x85, v3 0x02)."""
        decision = self.client_ids.decide(identity, client_id)
        if decision.reason is not None or decision.upstream_client_id is None:
            raise ClientIdRefused(decision.reason or Reason.CLIENT_ID_UNAVAILABLE)
        return decision.upstream_client_id

    # -- health ------------------------------------------------------------------------

    def readiness(self) -> dict[str, object]:
        """For /readyz: ``ready`` when every issuer has keys; ``stale`` lists issuers whose last
        key fetch failed (they keep serving their last good keys)."""
        issuers = {i.name: self.key_sets[key].status() for key, i in self.issuers.items()}
        ready = all(ks.loaded for ks in self.key_sets.values())
        stale = sorted(i.name for key, i in self.issuers.items() if self.key_sets[key].stale)
        return {"ready": ready, "stale": stale, "issuers": issuers}
