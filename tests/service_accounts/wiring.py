"""The authenticator hook for service accounts, as the gateway is to wire it (issue 6,
item 2): API keys before the JWT path, the (iss, sub) mapping after it. Tests use this
subclass until ``gateway/server/authn_factory.py`` carries the same lines."""

from __future__ import annotations

from gateway.auth import Authenticator, ClientIdRefused
from gateway.auth.service_accounts import ServiceAccounts
from gateway.identity import Identity
from gateway.mqtt.packets import Connect
from gateway.server.authn import AuthOutcome, TransportInfo
from gateway.server.authn_factory import GatewayAuthenticator


class ServiceAwareAuthenticator(GatewayAuthenticator):
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
