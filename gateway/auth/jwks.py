"""Per-issuer key sets: static (file, PEM, shared secret) and remote (JWKS URL, OIDC discovery).

A remote key set is fetched at start and refreshed in the background, honouring
``Cache-Control: max-age`` (RFC 9111 §5.2.2.1) between a floor and a ceiling. An unknown
``kid`` triggers at most one refetch per issuer per ``unknown_kid_refetch_s``. When a
fetch fails the last good keys keep serving and the set is marked stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.auth.config import MIN_HMAC_SECRET_BYTES, JwksConfig, _check_url, read_secret
from gateway.auth.issuers import ResolvedIssuer
from gateway.auth.keys import (
    UnusableKey,
    VerificationKey,
    key_from_pem,
    keys_from_jwks,
)
from gateway.configload import ConfigError

log = logging.getLogger("gateway.auth.jwks")

SessionFactory = Callable[[], Awaitable[aiohttp.ClientSession]]
Clock = Callable[[], float]

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


class FetchError(Exception):
    """A key fetch failed; the message names the cause, never key material or tokens."""


def cache_lifetime(cache_control: str | None, cfg: JwksConfig) -> float:
    """Seconds until the next refresh: ``max-age`` clamped to [min_refresh_s, max_refresh_s]."""
    seconds = cfg.default_refresh_s
    if cache_control:
        if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
            seconds = 0.0
        elif m := _MAX_AGE.search(cache_control):
            seconds = float(m.group(1))
    return min(max(seconds, cfg.min_refresh_s), cfg.max_refresh_s)


class KeySet:
    """The keys of one issuer. Static sets never go stale."""

    def __init__(self, issuer: ResolvedIssuer) -> None:
        self.issuer = issuer
        self._keys: tuple[VerificationKey, ...] = ()

    @property
    def keys(self) -> Sequence[VerificationKey]:
        return self._keys

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    @property
    def stale(self) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def on_unknown_kid(self) -> bool:
        """Try to learn new keys after an unknown ``kid``; True if the key set may have changed."""
        return False

    def status(self) -> dict[str, object]:
        return {"source": self.issuer.key_source, "keys": len(self._keys), "stale": self.stale}


class SecretKeySet(KeySet):
    """A shared HMAC secret from ``secret_env`` or ``secret_file``, read at construction."""

    def __init__(self, issuer: ResolvedIssuer) -> None:
        super().__init__(issuer)
        secret = read_secret(
            issuer.secret_env, issuer.secret_file, f"auth.issuers[{issuer.name}].secret"
        )
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            raise ConfigError(
                "[auth]",
                f"auth.issuers[{issuer.name}].secret",
                f"shared secret shorter than {MIN_HMAC_SECRET_BYTES} bytes",
            )
        self._keys = (VerificationKey(kid=None, key=secret),)


class FileKeySet(KeySet):
    """A JWKS file or a PEM public key. A JWKS file is re-read when it changes (rotation)."""

    def __init__(self, issuer: ResolvedIssuer, clock: Clock = time.monotonic) -> None:
        super().__init__(issuer)
        self._clock = clock
        self._mtime = -1.0
        self._load()

    def _load(self) -> None:
        path = self.issuer.key_location
        key = f"auth.issuers[{self.issuer.name}].{self.issuer.key_source}"
        try:
            mtime = os.stat(path).st_mtime
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConfigError("[auth]", key, f"cannot read {path}: {exc.strerror}") from None
        try:
            if self.issuer.key_source == "public_key_file":
                keys = [key_from_pem(data)]
            else:
                keys, _ = keys_from_jwks(orjson.loads(data))
        except (UnusableKey, orjson.JSONDecodeError) as exc:
            raise ConfigError("[auth]", key, f"{path}: {exc}") from None
        if not keys:
            raise ConfigError("[auth]", key, f"{path}: no usable signing keys")
        self._keys = tuple(keys)
        self._mtime = mtime

    async def on_unknown_kid(self) -> bool:
        if self.issuer.key_source != "jwks_file":
            return False
        try:
            changed = os.stat(self.issuer.key_location).st_mtime != self._mtime
            if changed:
                self._load()
            return changed
        except (OSError, ConfigError) as exc:
            log.warning("jwks_file_reload_failed issuer=%s error=%s", self.issuer.name, exc)
            return False


class RemoteKeySet(KeySet):
    """Keys from a JWKS URL or from OIDC discovery, cached and refreshed in the background."""

    def __init__(
        self,
        issuer: ResolvedIssuer,
        cfg: JwksConfig,
        session: SessionFactory,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(issuer)
        self._cfg = cfg
        self._session = session
        self._clock = clock
        self._loaded_once = False
        self._last_success: float | None = None
        self._last_error: str | None = "not fetched yet"
        self._next_refresh = 0.0
        self._last_kid_refetch: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0

    @property
    def stale(self) -> bool:
        """No keys yet, or the last fetch failed (the last good keys are still serving)."""
        return not self._loaded_once or self._last_error is not None

    async def start(self) -> None:
        """Fetch once (failures are logged, not raised) and start the refresh loop."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"jwks:{self.issuer.name}")

    async def close(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        self._inflight = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._next_refresh - self._clock()))
            await self.refresh()

    async def refresh(self) -> None:
        """Fetch now; concurrent callers share one request (single flight)."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._refresh_once())
        await asyncio.shield(self._inflight)

    async def on_unknown_kid(self) -> bool:
        now = self._clock()
        last = self._last_kid_refetch
        if last is not None and now - last < self._cfg.unknown_kid_refetch_s:
            return False
        self._last_kid_refetch = now
        await self.refresh()
        return True

    async def _refresh_once(self) -> None:
        try:
            keys, lifetime = await self._fetch()
        except Exception as exc:  # any failure keeps the last good keys (fail safe, not open)
            self._last_error = str(exc) if isinstance(exc, FetchError) else type(exc).__name__
            self._next_refresh = self._clock() + self._cfg.retry_s
            log.warning(
                "jwks_fetch_failed issuer=%s error=%s keeping=%d",
                self.issuer.name,
                exc,
                len(self._keys),
            )
            return
        if set(k.kid for k in keys) != set(k.kid for k in self._keys) and self._loaded_once:
            log.info("jwks_rotated issuer=%s keys=%d", self.issuer.name, len(keys))
        self._keys = tuple(keys)
        self._loaded_once = True
        self._last_error = None
        self._last_success = self._clock()
        self._next_refresh = self._last_success + lifetime

    async def _get_json(self, url: str) -> tuple[object, str | None]:
        self.fetches += 1
        session = await self._session()
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout_s)
        try:
            async with session.get(
                url,
                timeout=timeout,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as resp:
                if resp.status != 200:
                    raise FetchError(f"HTTP {resp.status} from {urlsplit(url).netloc}")
                body = await resp.content.read(self._cfg.max_bytes + 1)
                if len(body) > self._cfg.max_bytes:
                    raise FetchError(f"document larger than {self._cfg.max_bytes} bytes")
                cache_control = resp.headers.get("Cache-Control")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"{type(exc).__name__} from {urlsplit(url).netloc}") from None
        try:
            return orjson.loads(body), cache_control
        except orjson.JSONDecodeError:
            raise FetchError("response is not JSON") from None

    async def _jwks_url(self) -> str:
        """The JWKS URL, via OIDC discovery when configured (OIDC Discovery 1.0 §4)."""
        if self.issuer.key_source != "discovery":
            return self.issuer.key_location
        doc, _ = await self._get_json(self.issuer.key_location)
        if not isinstance(doc, dict):
            raise FetchError("discovery document is not an object")
        # §4.3: the issuer in the document must be identical to the configured one.
        if doc.get("issuer") != self.issuer.issuer:
            raise FetchError("discovery document issuer does not match")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or _check_url(jwks_uri):
            raise FetchError("discovery document has no usable https jwks_uri")
        return jwks_uri

    async def _fetch(self) -> tuple[list[VerificationKey], float]:
        url = await self._jwks_url()
        doc, cache_control = await self._get_json(url)
        try:
            keys, skipped = keys_from_jwks(doc)
        except UnusableKey as exc:
            raise FetchError(str(exc)) from None
        if not keys:
            raise FetchError(f"no usable signing keys ({skipped} skipped)")
        return keys, cache_lifetime(cache_control, self._cfg)

    def status(self) -> dict[str, object]:
        now = self._clock()
        return {
            "source": self.issuer.key_source,
            "keys": len(self._keys),
            "stale": self.stale,
            "age_s": None if self._last_success is None else round(now - self._last_success, 1),
            "last_error": self._last_error,
            "fetches": self.fetches,
        }


def make_key_set(
    issuer: ResolvedIssuer, cfg: JwksConfig, session: SessionFactory, clock: Clock = time.monotonic
) -> KeySet:
    """The key set for an issuer's key source; static sources are read now (ConfigError)."""
    if issuer.key_source == "secret":
        return SecretKeySet(issuer)
    if issuer.key_source in ("jwks_file", "public_key_file"):
        return FileKeySet(issuer, clock)
    return RemoteKeySet(issuer, cfg, session, clock)
