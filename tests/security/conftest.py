"""The attack suite's fixtures: one gateway for the whole suite (fast), in front of the real
Mosquitto through a recording relay, and a witness that proves nothing reached the broker.

Every attack test asserts two things: the exact outcome the client sees, and (through
``witness``) that nothing of the attack reached the broker: neither in the bytes the broker
received (``SplitRelay``) nor as a message on the broker (``BrokerSpy`` on ``#``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from gateway.mqtt.packets import Connack, Connect, Disconnect
from tests.e2e_auth.wire import SplitRelay, Wire, auth_toml, dev_issuer_toml
from tests.support.gateway_thread import GatewayThread, write_config
from tests.support.idp import DevIdp
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

ORIGIN = "https://app.example.com"
MAX_PACKET = 64 * 1024


def _rules() -> list[dict[str, object]]:
    return [
        {
            "id": "own",
            "topic": "sec/{user_id}/own/#",
            "action": "all",
            "effect": "allow",
            "qos": [0, 1, 2],
            "retain": True,
        },
        {
            "id": "wide",
            "topic": "sec/{user_id}/wide/#",
            "action": "all",
            "effect": "allow",
            "qos": [0, 1, 2],
        },
        {
            "id": "no-secret",
            "topic": "sec/{user_id}/wide/secret",
            "action": "all",
            "effect": "deny",
        },
        {"id": "plus", "topic": "sec/{user_id}/plus/+", "action": "subscribe", "effect": "allow"},
        {
            "id": "low",
            "topic": "sec/{user_id}/low/#",
            "action": "publish",
            "effect": "allow",
            "qos": [0],
        },
        {
            "id": "will",
            "topic": "sec/{user_id}/will",
            "action": "publish",
            "effect": "allow",
            "qos": [0, 1],
        },
        {"id": "feed", "topic": "sec/feed/+", "action": "subscribe", "effect": "allow"},
        {
            "id": "jobs",
            "topic": "sec/jobs/#",
            "action": "subscribe",
            "effect": "allow",
            "share_group": "workers",
        },
        {"id": "agent", "topic": "sec/agents/{agent_id}/#", "action": "all", "effect": "allow"},
    ]


POLICY = orjson.dumps({"version": "2.0", "default_action": "deny", "rules": _rules()}).decode()


def user() -> str:
    return "u" + uuid.uuid4().hex[:10]


def marker() -> bytes:
    """A payload nobody else sends: if it is ever seen at the broker, the attack got through."""
    return b"ATTACK-" + uuid.uuid4().hex.encode()


@pytest.fixture(scope="session")
def relay(broker: Mosquitto) -> Iterator[SplitRelay]:
    r = SplitRelay(broker.port).start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def gw(
    tmp_path_factory: pytest.TempPathFactory, certs: Path, idp: DevIdp, relay: SplitRelay
) -> Iterator[GatewayThread]:
    d = tmp_path_factory.mktemp("secgw")
    policy_path = d / "policy.json"
    policy_path.write_text(POLICY)
    path = write_config(
        d / "gateway.toml",
        certs=certs,
        upstream_port=relay.port,
        listener_extra=f'allowed_origins = ["{ORIGIN}"]',
        limits=f"connect_timeout_s = 5.0\nmax_packet_size = {MAX_PACKET}",
        extra=auth_toml(dev_issuer_toml(idp)) + f'\n[acl]\npolicy = "{policy_path}"\n',
    )
    gt = GatewayThread.from_file(path, idp=idp, certs=certs, policy_path=policy_path).start()
    yield gt
    gt.stop()


class Witness:
    """What reached the broker while a test ran."""

    def __init__(self, relay: SplitRelay, spy: BrokerSpy) -> None:
        self.relay = relay
        self.spy = spy
        self.start = len(relay.received())
        self.connections_at_start = len(relay.connections)

    def broker_bytes(self) -> bytes:
        time.sleep(0.1)  # the relay copies on its own thread
        return self.relay.received()[self.start :]

    def new_connections(self) -> int:
        # The gateway opens the broker connection before it answers CONNACK, and every
        # caller has seen its CONNACK or close: a short settle for the relay's thread.
        time.sleep(0.05)
        return len(self.relay.connections) - self.connections_at_start

    def nothing(self, *needles: bytes | str) -> None:
        """None of ``needles`` reached the broker: not in its input, not as a message."""
        data = self.broker_bytes()
        seen = self.spy.seen(0.0)
        for n in needles:
            b = n.encode() if isinstance(n, str) else n
            assert b not in data, f"{b!r} reached the broker"
            for topic, payload, _ in seen:
                assert b not in topic.encode() and b not in payload, f"{b!r} seen on {topic}"

    def no_upstream_connection(self) -> None:
        assert self.new_connections() == 0, "the gateway opened a broker connection"

    def delivered(self, needle: bytes) -> list[str]:
        """Topics on which a message carrying ``needle`` reached the broker."""
        return [t for t, p, _ in self.spy.seen(0.3) if needle in p]


@pytest.fixture
def witness(relay: SplitRelay, broker: Mosquitto) -> Iterator[Witness]:
    with BrokerSpy(broker.port, "#") as spy:
        yield Witness(relay, spy)


class Attacker(Wire):
    """A raw client that can also send bytes that are not packets."""

    sub: str = ""

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    @property
    def close_code(self) -> int | None:
        return None if self.ws is None else self.ws.close_code


@contextlib.asynccontextmanager
async def session(
    gw: GatewayThread, level: int = 5, sub: str | None = None, **claims: object
) -> AsyncIterator[Attacker]:
    """A raw client, connected and authenticated as ``sub``."""
    sub = sub or user()
    async with Attacker(gw, level=level) as w:
        connack = await w.connect(
            Connect(
                "c-" + sub,
                protocol_level=level,
                username="u",
                password=gw.idp.token(sub, **claims).encode(),
            )
        )
        assert isinstance(connack, Connack) and connack.reason_code == 0, connack
        w.sub = sub
        yield w


async def closed_with(w: Attacker, level: int, code: int | None) -> None:
    """v5: a DISCONNECT with ``code`` then the close; v3.1.1: the close alone."""
    if level == 5 and code is not None:
        got = await w.recv()
        assert got == Disconnect(code), got
    await w.expect_closed()
