"""Fixtures: signing keys made at test time, and a local IdP (JWKS + OIDC discovery + webhook)
served by aiohttp on 127.0.0.1."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.auth import AuthConfig, Authenticator
from gateway.auth.devidp import SigningKey, mint_token, public_jwk
from gateway.configload import load_dataclass

AUDIENCE = "mqttgate-test"


@dataclass(frozen=True)
class Keys:
    rsa: rsa.RSAPrivateKey
    rsa2: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ec384: ec.EllipticCurvePrivateKey
    ed: ed25519.Ed25519PrivateKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(65537, 2048),
        rsa2=rsa.generate_private_key(65537, 2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        ec384=ec.generate_private_key(ec.SECP384R1()),
        ed=ed25519.Ed25519PrivateKey.generate(),
    )


WebhookHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class LocalIdP:
    """A local identity provider. ``issuer`` is its base URL; every request is counted."""

    base: str = ""
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    cache_control: str | None = "max-age=300"
    down: bool = False
    # The discovery document's issuer; None means "same as base" (the correct value).
    discovery_issuer: str | None = None
    hits: Counter[str] = field(default_factory=Counter)
    webhook: WebhookHandler | None = None
    webhook_bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def jwks_url(self) -> str:
        return self.base + "/jwks.json"

    @property
    def webhook_url(self) -> str:
        return self.base + "/webhook"

    def publish(self, *signing_keys: SigningKey, kids: tuple[str, ...] = ()) -> None:
        self.jwks = {
            "keys": [
                public_jwk(k, kids[i] if i < len(kids) else None)
                for i, k in enumerate(signing_keys)
            ]
        }

    def token(self, key: SigningKey, **kw: Any) -> str:
        kw.setdefault("issuer", self.issuer)
        kw.setdefault("audience", AUDIENCE)
        kw.setdefault("subject", "u1")
        return mint_token(key, **kw)

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.hits["jwks"] += 1
        if self.down:
            return web.Response(status=503)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.json_response(self.jwks, headers=headers)

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.hits["discovery"] += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response(
            {
                "issuer": self.discovery_issuer or self.base,
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        self.hits["webhook"] += 1
        self.webhook_bodies.append(await request.json())
        if self.webhook is None:
            return web.Response(status=404)
        return await self.webhook(request)


@pytest.fixture
async def idp() -> AsyncIterator[LocalIdP]:
    state = LocalIdP()
    app = web.Application()
    app.router.add_get("/jwks.json", state._jwks)
    app.router.add_get("/.well-known/openid-configuration", state._discovery)
    app.router.add_get("/.well-known/jwks.json", state._jwks)
    app.router.add_post("/webhook", state._webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    port = server.sockets[0].getsockname()[1]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def auth_config(table: Mapping[str, Any]) -> AuthConfig:
    """An AuthConfig loaded the way the gateway loads it (validation included)."""
    return load_dataclass(AuthConfig, dict(table), "test.toml", "auth")


# Fast timings so that refresh and throttling are observable within a test.
FAST_JWKS = {"min_refresh_s": 0.0, "retry_s": 0.05, "unknown_kid_refetch_s": 60.0}


@pytest.fixture
async def make_auth() -> AsyncIterator[Callable[..., Awaitable[Authenticator]]]:
    """Build and start authenticators from config tables; all are closed at the end."""
    made: list[Authenticator] = []

    async def make(table: Mapping[str, Any], **kw: Any) -> Authenticator:
        auth = Authenticator(auth_config(table), **kw)
        made.append(auth)
        await auth.start()
        return auth

    yield make
    for auth in made:
        await auth.close()


def creds(
    password: str | bytes | None = None,
    *,
    header: str | None = None,
    query: str | None = None,
    username: str | None = None,
    client_id: str = "c1",
    remote: str = "192.0.2.1",
    headers: Mapping[str, str] | None = None,
    protocol_level: int = 5,
    auth_method: str | None = None,
    auth_data: bytes | None = None,
) -> Any:
    from gateway.auth import Credentials

    pw = password.encode() if isinstance(password, str) else password
    return Credentials(
        password=pw,
        username=username,
        header_token=header,
        query_token=query,
        client_id=client_id,
        remote_address=remote,
        headers=headers or {},
        protocol_level=protocol_level,
        auth_method=auth_method,
        auth_data=auth_data,
    )


def now() -> float:
    return time.time()
