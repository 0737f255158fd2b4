"""A gateway running in its own thread and event loop, so tests can use blocking clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import GatewayConfig, load_config
from gateway.server.app import Gateway
from gateway.server.authn_factory import build_authenticator
from tests.support.idp import DevIdp
from tests.support.paho import Client

T = TypeVar("T")


def write_config(
    path: Path,
    *,
    certs: Path,
    upstream_port: int,
    extra: str = "",
    listener_extra: str = "",
    limits: str = "",
    admin: str = "",
) -> Path:
    path.write_text(
        f"""
[listener]
host = "127.0.0.1"
port = 0
certfile = "{certs / "server.pem"}"
keyfile = "{certs / "server.key"}"
{listener_extra}

[upstream]
url = "mqtt://127.0.0.1:{upstream_port}"
connect_timeout_s = 2.0

[limits]
shutdown_grace_s = 2.0
{limits or "connect_timeout_s = 5.0"}

[admin]
host = "127.0.0.1"
port = 0
{admin}
{extra}
"""
    )
    return path


class GatewayThread:
    """A gateway built from a config file exactly as ``mqttgate serve`` builds it."""

    def __init__(
        self, config: GatewayConfig, *, idp: DevIdp, certs: Path, policy_path: Path
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self.config = config
        self.idp = idp
        self.certs = certs
        self.policy_path = policy_path
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @classmethod
    def from_file(cls, path: Path, *, idp: DevIdp, certs: Path, policy_path: Path) -> GatewayThread:
        return cls(load_config(path), idp=idp, certs=certs, policy_path=policy_path)

    def client(
        self,
        *,
        sub: str = "relay-user",
        token: str | None = None,
        claims: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Client:
        """A paho client over wss, with a token of the test issuer in the CONNECT password."""
        if "password" not in kw:
            kw["password"] = token if token is not None else self.idp.token(sub, **(claims or {}))
        return Client(self.port, self.certs / "ca.pem", **kw)

    def start(self) -> GatewayThread:
        self._thread.start()

        async def boot() -> Gateway:
            gw = Gateway(self.config, build_authenticator(self.config))
            await gw.start()
            return gw

        self.gateway = self.call(boot())
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def port(self) -> int:
        assert self.gateway is not None and self.gateway.port is not None
        return self.gateway.port

    @property
    def admin_port(self) -> int:
        assert self.gateway is not None and self.gateway.admin_port is not None
        return self.gateway.admin_port

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.gateway is not None:
            try:
                self.call(self.gateway.stop(grace_s=2.0))
            finally:
                self.gateway = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
