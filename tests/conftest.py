"""Shared fixtures: development certificates, a real Mosquitto, a gateway in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.certs import make_dev_certs
from tests.support.gateway_thread import GatewayThread, write_config
from tests.support.idp import PERMIT_ALL_POLICY, DevIdp
from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA and server certificate, made at test time (nothing committed)."""
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out)
    return out


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One real Mosquitto for the session; tests use their own topic prefixes."""
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> DevIdp:
    """The development issuer: a key made at test time, its JWKS file, tokens."""
    return DevIdp(tmp_path_factory.mktemp("idp"))


GatewayFactory = Callable[..., GatewayThread]


@pytest.fixture
def gateway_factory(
    tmp_path: Path, certs: Path, broker: Mosquitto, idp: DevIdp
) -> Iterator[GatewayFactory]:
    """Starts gateways with real JWT authentication (the test issuer) and a policy file."""
    started: list[GatewayThread] = []

    def make(
        *,
        upstream_port: int | None = None,
        policy: str = PERMIT_ALL_POLICY,
        auth: str | None = None,
        acl: str = "",
        extra: str = "",
        **kw: str,
    ) -> GatewayThread:
        n = len(started)
        policy_path = tmp_path / f"policy{n}.json"
        policy_path.write_text(policy)
        sections = (
            (auth if auth is not None else idp.auth_toml())
            + f"""
[acl]
policy = "{policy_path}"
watch_interval_s = 0.2
{acl}
{extra}
"""
        )
        path = write_config(
            tmp_path / f"gateway{n}.toml",
            certs=certs,
            upstream_port=upstream_port if upstream_port is not None else broker.port,
            extra=sections,
            **kw,
        )
        gt = GatewayThread.from_file(path, idp=idp, certs=certs, policy_path=policy_path)
        started.append(gt.start())
        return gt

    yield make
    for gt in started:
        gt.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> GatewayThread:
    return gateway_factory()
