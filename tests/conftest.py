"""Shared fixtures: development certificates, a real Mosquitto, a gateway in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.certs import make_dev_certs
from tests.support.authn import AcceptEveryone
from tests.support.gateway_thread import GatewayThread, write_config
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


GatewayFactory = Callable[..., GatewayThread]


@pytest.fixture
def gateway_factory(tmp_path: Path, certs: Path, broker: Mosquitto) -> Iterator[GatewayFactory]:
    started: list[GatewayThread] = []

    def make(
        *, authenticator: object | None = None, upstream_port: int | None = None, **kw: str
    ) -> GatewayThread:
        path = write_config(
            tmp_path / f"gateway{len(started)}.toml",
            certs=certs,
            upstream_port=upstream_port if upstream_port is not None else broker.port,
            **kw,
        )
        gt = GatewayThread.from_file(path, authenticator or AcceptEveryone())  # type: ignore[arg-type]
        started.append(gt.start())
        return gt

    yield make
    for gt in started:
        gt.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> GatewayThread:
    return gateway_factory()
