"""The seam between the shell and whatever verifies a client's credentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.identity import Identity
from gateway.mqtt.constants import ConnackV3, ReasonCode
from gateway.mqtt.packets import Connect


@dataclass(frozen=True, slots=True)
class TransportInfo:
    """What the WebSocket upgrade told us about the client (tokens stay out of logs)."""

    remote_address: str
    headers: Mapping[str, str] = field(default_factory=dict)
    header_token: str | None = None
    query_token: str | None = None
    tls_version: str | None = None


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    ok: bool
    reason: str
    identity: Identity | None = None
    upstream_client_id: str | None = None
    connack_v5: int = ReasonCode.NOT_AUTHORIZED
    connack_v3: int = ConnackV3.NOT_AUTHORIZED
    issuer: str | None = None


class ConnectAuthenticator(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check_upgrade(
        self, header_token: str | None, query_token: str | None, remote_address: str | None
    ) -> tuple[int, str] | None: ...

    def readiness(self) -> dict[str, object]: ...

    async def verify_token(self, token: str, remote_address: str | None) -> Identity | None: ...

    async def authenticate(
        self, connect: Connect, client_id: str, transport: TransportInfo, assigned: bool = False
    ) -> AuthOutcome: ...

    async def reauthenticate(self, identity: Identity, token: str) -> AuthOutcome: ...
