"""The JWT/webhook authenticator (gateway.auth) behind the shell's authentication seam."""

from __future__ import annotations

import dataclasses

from gateway.auth import AUTH_METHOD_JWT, Authenticator, AuthResult, ClientIdRefused, Credentials
from gateway.config import GatewayConfig
from gateway.identity import Identity
from gateway.mqtt.constants import ConnackV3, PropertyId, ReasonCode
from gateway.mqtt.packets import Connect
from gateway.server.authn import AuthOutcome, TransportInfo


def _outcome(result: AuthResult) -> AuthOutcome:
    reason = result.reason.value if result.reason is not None else "invalid"
    return AuthOutcome(
        False,
        reason,
        connack_v5=result.connack_v5 or ReasonCode.NOT_AUTHORIZED,
        connack_v3=result.connack_v3 or ConnackV3.NOT_AUTHORIZED,
    )


class GatewayAuthenticator:
    """Adapts ``gateway.auth.Authenticator`` to CONNECT packets and upgrade requests."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def start(self) -> None:
        await self.auth.start()

    async def close(self) -> None:
        await self.auth.close()

    async def authenticate(
        self, connect: Connect, client_id: str, transport: TransportInfo, assigned: bool = False
    ) -> AuthOutcome:
        """Verify a CONNECT. ``assigned``: the client sent no id and the gateway made
        ``client_id`` up; the broker then assigns the upstream id (nothing to take over)."""
        method = connect.properties.get(PropertyId.AUTHENTICATION_METHOD)
        # MQTT 5 enhanced authentication (spec 4.12): with method "jwt" the token is the
        # Authentication Data, one more carrier that must agree with any other copy.
        data = connect.properties.get(PropertyId.AUTHENTICATION_DATA)
        creds = Credentials(
            password=connect.password,
            auth_data=data if method == AUTH_METHOD_JWT and isinstance(data, bytes) else None,
            username=connect.username,
            header_token=transport.header_token,
            query_token=transport.query_token,
            client_id=client_id,
            remote_address=transport.remote_address,
            headers=transport.headers,
            protocol_level=connect.protocol_level,
            auth_method=method if isinstance(method, str) else None,
        )
        result = await self.auth.authenticate(creds)
        if not result.ok or result.identity is None:
            return _outcome(result)
        try:
            upstream_id = self.auth.upstream_client_id(
                result.identity, "" if assigned else client_id
            )
        except ClientIdRefused as exc:
            return AuthOutcome(False, exc.reason.value, None, None, exc.connack_v5, exc.connack_v3)
        return AuthOutcome(
            True,
            "authenticated",
            self._with_leeway(result.identity),
            upstream_id,
            issuer=result.issuer,
        )

    async def reauthenticate(self, identity: Identity, token: str) -> AuthOutcome:
        result = await self.auth.reauthenticate(identity, token)
        if not result.ok or result.identity is None:
            return _outcome(result)
        return AuthOutcome(
            True, "reauthenticated", self._with_leeway(result.identity), issuer=result.issuer
        )

    def _with_leeway(self, identity: Identity) -> Identity:
        """The session ends when the token stops verifying: at ``exp`` plus the leeway
        the verification allowed, not at ``exp`` (a token inside the leeway would
        otherwise connect and be dropped at once)."""
        if identity.expires_at is None:
            return identity
        return dataclasses.replace(
            identity, expires_at=identity.expires_at + self.auth.config.leeway_s
        )

    async def check_upgrade(
        self, header_token: str | None, query_token: str | None, remote_address: str | None
    ) -> tuple[int, str] | None:
        """HTTP status and reason for a token on the upgrade that is refused; None to go on."""
        result = await self.auth.check_upgrade_token(header_token, query_token, remote_address)
        if result is None or result.ok:
            return None
        return (result.http_status or 401, result.reason.value if result.reason else "invalid")

    async def verify_token(self, token: str, remote_address: str | None) -> Identity | None:
        """A bearer JWT (the admin API): the identity, or None when it is refused."""
        result = await self.auth.check_upgrade_token(token, None, remote_address)
        if result is None or not result.ok:
            return None
        return result.identity

    def readiness(self) -> dict[str, object]:
        return self.auth.readiness()


def build_authenticator(config: GatewayConfig) -> GatewayAuthenticator:
    return GatewayAuthenticator(Authenticator(config.auth))
