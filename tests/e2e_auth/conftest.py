"""Fixtures for the end-to-end authentication tests (issue 3, item 12): a relay that records
what the broker receives, and a live JWKS endpoint with keys made at test time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e_auth.wire import JwksServer, SplitRelay
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def relay(broker: Mosquitto) -> Iterator[SplitRelay]:
    """Between the gateway and the real Mosquitto: every byte the broker receives."""
    r = SplitRelay(broker.port)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ec_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """Two signing keys: the current one and the one it is rotated to."""
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
