"""A credential-blind authenticator for relay tests that are not about authentication.

It stands in the same seam the JWT authenticator fills (gateway.server.authn), so the
relay is exercised exactly as in production; the authentication tests use real JWTs.
"""

from __future__ import annotations

from gateway.identity import Identity
from gateway.mqtt.packets import Connect
from gateway.server.authn import AuthOutcome, TransportInfo


class AcceptEveryone:
    """Accepts every CONNECT; the broker sees the client's own id."""

    def __init__(self) -> None:
        self.seen: list[TransportInfo] = []

    async def authenticate(
        self, connect: Connect, client_id: str, transport: TransportInfo
    ) -> AuthOutcome:
        self.seen.append(transport)
        identity = Identity.from_values({"user_id": connect.username or "anonymous"})
        return AuthOutcome(True, "accepted", identity, client_id)

    async def reauthenticate(self, identity: Identity, token: str) -> AuthOutcome:
        return AuthOutcome(True, "accepted", identity)
