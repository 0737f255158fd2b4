"""The JWT/webhook authenticator (gateway.auth) behind the shell's authentication seam."""

from __future__ import annotations

import dataclasses

from gateway.auth import AUTH_METHOD_JWT, Authenticator, AuthResult, ClientIdRefused, Credentials
from gateway.auth.service_accounts import ServiceAccounts
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


class ServiceAwareAuthenticator(GatewayAuthenticator):
    """Service accounts (issue 6, item 2) around the JWT path: an API key login
    (user name ``service:<id>``) before it, the (iss, sub) mapping after it."""

    def __init__(self, auth: Authenticator, accounts: ServiceAccounts) -> None:
        super().__init__(auth)
        self.accounts = accounts

    async def authenticate(
        self, connect: Connect, client_id: str, transport: TransportInfo, assigned: bool = False
    ) -> AuthOutcome:
        # 1. before the JWT path: user name "service:<id>" with an API key account.
        if not self.auth.limiter.allowed(transport.remote_address):
            return await super().authenticate(connect, client_id, transport, assigned)
        keyed = self.accounts.check_api_key(connect.username, connect.password)
        if keyed is not None:
            if not keyed.ok or keyed.identity is None:
                self.auth.limiter.record_failure(transport.remote_address)
                return AuthOutcome(
                    False, keyed.reason or "refused", None, None, keyed.connack_v5, keyed.connack_v3
                )
            identity = keyed.identity.with_client_id(client_id)
            decision = self.auth.decide_client_id(identity, "" if assigned else client_id)
            if decision.upstream_client_id is None:
                reason = decision.reason.value if decision.reason else "client_id_unavailable"
                return AuthOutcome(False, reason, None, None)
            return AuthOutcome(
                True, "authenticated", identity, decision.upstream_client_id, issuer="api_key"
            )
        # 2. the JWT path, then 3. the (iss, sub) -> service account mapping.
        outcome = await super().authenticate(connect, client_id, transport, assigned)
        if not outcome.ok or outcome.identity is None:
            return outcome
        mapped = self.accounts.for_jwt(outcome.identity)
        if not mapped.ok or mapped.identity is None:
            return AuthOutcome(False, mapped.reason or "refused", None, None)
        if mapped.account_id is None:
            return outcome
        try:
            upstream = self.auth.upstream_client_id(mapped.identity, "" if assigned else client_id)
        except ClientIdRefused as exc:
            return AuthOutcome(False, exc.reason.value, None, None, exc.connack_v5, exc.connack_v3)
        return AuthOutcome(True, outcome.reason, mapped.identity, upstream, issuer=outcome.issuer)

    async def reauthenticate(self, identity: Identity, token: str) -> AuthOutcome:
        outcome = await super().reauthenticate(identity, token)
        if not outcome.ok or outcome.identity is None:
            return outcome
        mapped = self.accounts.for_jwt(outcome.identity)
        if (
            not mapped.ok
            or mapped.identity is None
            or mapped.identity.principal != identity.principal
        ):
            return AuthOutcome(False, mapped.reason or "reauth_principal_changed")
        return AuthOutcome(True, outcome.reason, mapped.identity, issuer=outcome.issuer)

    async def verify_token(self, token: str, remote_address: str | None) -> Identity | None:
        identity = await super().verify_token(token, remote_address)
        if identity is None:
            return None
        mapped = self.accounts.for_jwt(identity)
        return mapped.identity if mapped.ok else None


def build_authenticator(config: GatewayConfig) -> GatewayAuthenticator:
    """Always service-account aware: even with none configured, an end-user token that
    claims a ``service:`` user id is refused, so nobody can pose as a service."""
    return ServiceAwareAuthenticator(
        Authenticator(config.auth), ServiceAccounts(config.service_accounts)
    )
