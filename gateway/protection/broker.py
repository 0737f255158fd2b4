"""How the gateway's own service account reaches the broker (sweeper and purge)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiomqtt


@dataclass(frozen=True, slots=True)
class BrokerParams:
    """Connection parameters for the service account; the password is never printed."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = None
    client_id: str = ""  # empty: the broker assigns one (a clean session either way)
    timeout_s: float = 10.0

    @classmethod
    def from_url(
        cls,
        url: str,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> BrokerParams:
        """``mqtt://host:port`` or ``mqtts://host:port`` (TLS with the default context
        unless one is given)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
        tls = parts.scheme == "mqtts"
        if tls and tls_context is None:
            tls_context = ssl.create_default_context()
        port = parts.port or (8883 if tls else 1883)
        return cls(parts.hostname, port, username, password, tls_context if tls else None)

    def client(self) -> aiomqtt.Client:
        """A new (not yet connected) client; MQTT 3.1.1 so any broker version will do."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id or None,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            tls_context=self.tls_context,
            timeout=self.timeout_s,
        )
