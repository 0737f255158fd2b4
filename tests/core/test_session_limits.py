"""Resource limits in the session (issue 9, item 3), byte by byte."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from gateway.acl import compile_policy
from gateway.core.session import Session, SessionSettings
from gateway.identity import Identity
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.decoder import decode_packet
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Suback,
    Subscribe,
    Subscription,
)
from tests.support.idp import PERMIT_ALL_POLICY

NOW = 5_000.0
POLICY = compile_policy(orjson.loads(PERMIT_ALL_POLICY))
BASE = SessionSettings(max_packet_size=1 << 20, connect_timeout_s=10.0)


def session(level: int = 5, keep_alive: int = 60, **limits: object) -> tuple[Session, Connack, int]:
    s = Session(dataclasses.replace(BASE, **limits), NOW, POLICY)  # type: ignore[arg-type]
    s.receive_from_client(
        encode(Connect("c", protocol_level=level, keep_alive=keep_alive), level), NOW
    )
    s.auth_succeeded(Identity.from_values({"user_id": "u"}), "u:c")
    up = s.upstream_connected()
    connect = decode_packet(up.to_upstream[0], level)
    assert isinstance(connect, Connect)
    step = s.receive_from_upstream(encode(Connack(False, 0), level))
    connack = decode_packet(step.to_client[0], level)
    assert isinstance(connack, Connack)
    return s, connack, connect.keep_alive


def test_keep_alive_imposed_and_enforced() -> None:
    s, connack, upstream_keep_alive = session(keep_alive=0, max_keep_alive_s=30)
    assert connack.properties.get(PropertyId.SERVER_KEEP_ALIVE) == 30
    # The broker's own check is given twice as long: the gateway's fires first.
    assert upstream_keep_alive == 60
    assert s.next_deadline() == NOW + 45
    s.receive_from_client(encode(Publish("a", b"", 0), 5), NOW + 40)  # activity moves it
    assert s.next_deadline() == NOW + 85
    assert s.handle_timer(NOW + 84).close is None
    step = s.handle_timer(NOW + 85)
    assert decode_packet(step.to_client[0], 5) == Disconnect(0x8D)
    assert step.close is not None


def test_keep_alive_within_maximum_kept() -> None:
    _, connack, _ = session(keep_alive=20, max_keep_alive_s=30)
    assert PropertyId.SERVER_KEEP_ALIVE not in connack.properties


def test_receive_maximum_announced_and_enforced() -> None:
    s, connack, _ = session(receive_maximum=2)
    assert connack.properties.get(PropertyId.RECEIVE_MAXIMUM) == 2
    assert len(s.receive_from_client(encode(Publish("a", b"", 1, packet_id=1), 5)).to_upstream) == 1
    assert len(s.receive_from_client(encode(Publish("a", b"", 2, packet_id=2), 5)).to_upstream) == 1
    # The broker completes 1; 2 is still in flight (PUBREC only).
    s.receive_from_upstream(encode(Puback(1), 5))
    s.receive_from_upstream(encode(Pubrec(2), 5))
    assert len(s.receive_from_client(encode(Publish("a", b"", 1, packet_id=3), 5)).to_upstream) == 1
    step = s.receive_from_client(encode(Publish("a", b"", 1, packet_id=4), 5))
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 5) == Disconnect(0x93)


def test_receive_window_reopens_after_pubcomp() -> None:
    s, _, _ = session(receive_maximum=1)
    s.receive_from_client(encode(Publish("a", b"", 2, packet_id=7), 5))
    s.receive_from_upstream(encode(Pubrec(7), 5))
    s.receive_from_upstream(encode(Pubcomp(7), 5))
    assert len(s.receive_from_client(encode(Publish("a", b"", 1, packet_id=8), 5)).to_upstream) == 1


@pytest.mark.parametrize("level", [4, 5])
def test_message_rate(level: int) -> None:
    s, _, _ = session(level=level, max_messages_per_s=10.0)
    sent = 0
    for i in range(20):  # a burst of twice the rate is allowed
        step = s.receive_from_client(encode(Publish("a", b"", 0), level), NOW + i * 0.001)
        sent += len(step.to_upstream)
    assert sent == 20
    step = s.receive_from_client(encode(Publish("a", b"", 0), level), NOW + 0.03)
    assert step.to_upstream == [] and step.close is not None
    if level == 5:
        assert decode_packet(step.to_client[0], 5) == Disconnect(0x96)


def test_byte_rate() -> None:
    s, _, _ = session(max_bytes_per_s=1000.0)
    assert s.receive_from_client(encode(Publish("a", b"x" * 1500, 0), 5), NOW).to_upstream
    step = s.receive_from_client(encode(Publish("a", b"x" * 1500, 0), 5), NOW + 0.1)
    assert decode_packet(step.to_client[0], 5) == Disconnect(0x97)


def test_topic_length_and_depth() -> None:
    s, _, _ = session(max_topic_length=16, max_topic_levels=3)
    step = s.receive_from_client(encode(Publish("a" * 17, b"", 1, packet_id=1), 5))
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 5) == Puback(1, 0x90)
    step = s.receive_from_client(encode(Publish("a/b/c/d", b"", 1, packet_id=2), 5))
    assert decode_packet(step.to_client[0], 5) == Puback(2, 0x90)
    assert s.receive_from_client(encode(Publish("a/b/c", b"", 1, packet_id=3), 5)).to_upstream
    step = s.receive_from_client(encode(Subscribe(4, (Subscription("a/b/c/#", 0),)), 5))
    assert decode_packet(step.to_client[0], 5) == Suback(4, (0x8F,))


def test_subscription_quota() -> None:
    s, _, _ = session(max_subscriptions=2)
    step = s.receive_from_client(
        encode(Subscribe(1, (Subscription("a", 0), Subscription("b", 0), Subscription("c", 0))), 5)
    )
    fwd = decode_packet(step.to_upstream[0], 5)
    assert isinstance(fwd, Subscribe) and len(fwd.subscriptions) == 2
    step = s.receive_from_upstream(encode(Suback(1, (0, 0)), 5))
    assert decode_packet(step.to_client[0], 5) == Suback(1, (0, 0, 0x97))
    # Re-subscribing to a held filter is not a new subscription.
    assert s.receive_from_client(encode(Subscribe(2, (Subscription("a", 1),)), 5)).to_upstream
