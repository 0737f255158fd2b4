"""Byte-level tests of the sans-I/O session: no sockets, only bytes in and bytes out."""

from __future__ import annotations

import orjson
import pytest

from gateway.acl import compile_policy
from gateway.core.outputs import (
    AuditEvent,
    Authenticate,
    Close,
    OpenUpstream,
    Reauthenticate,
    Step,
)
from gateway.core.session import Session, SessionSettings, SessionState
from gateway.identity import Identity
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.decoder import decode_packet
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from gateway.mqtt.properties import Properties
from tests.support.idp import PERMIT_ALL_POLICY

NOW = 1_000_000.0
POLICY = compile_policy(orjson.loads(PERMIT_ALL_POLICY), source="permit-all")
SETTINGS = SessionSettings(
    max_packet_size=4096,
    connect_timeout_s=10.0,
    max_keep_alive_s=0,  # keep-alive has its own tests below
    upstream_username="gw",
    upstream_password=b"gw-secret",
)
ALICE = Identity.from_values({"user_id": "alice"}, expires_at=NOW + 3600)


def new_session() -> Session:
    return Session(SETTINGS, NOW, POLICY, client_id_factory=lambda: "assigned-1")


def decode_all(chunks: list[bytes], level: int) -> list[object]:
    return [decode_packet(c, level) for c in chunks]


def actions(step: Step, kind: type) -> list[object]:
    return [a for a in step.actions if isinstance(a, kind)]


def connected(level: int = 4, connect: Connect | None = None) -> tuple[Session, Step]:
    """Drive a session through CONNECT, authentication and the broker's CONNACK."""
    s = new_session()
    c = connect or Connect(
        "c1", protocol_level=level, password=b"token", username="u", keep_alive=0
    )
    step = s.receive_from_client(encode(c, level))
    assert actions(step, Authenticate) and not step.to_upstream
    step = s.auth_succeeded(ALICE, "alice:c1")
    assert actions(step, OpenUpstream)
    up = s.upstream_connected()
    assert len(up.to_upstream) == 1
    final = s.receive_from_upstream(encode(Connack(False, 0), level))
    assert s.state is SessionState.CONNECTED
    final.to_upstream[:0] = up.to_upstream
    return s, final


@pytest.mark.parametrize("level", [4, 5])
def test_connect_rewritten_for_the_broker(level: int) -> None:
    s, step = connected(level)
    upstream_connect = decode_packet(step.to_upstream[0], level)
    assert isinstance(upstream_connect, Connect)
    assert upstream_connect.client_id == "alice:c1"
    assert upstream_connect.username == "gw"
    assert upstream_connect.password == b"gw-secret"  # never the client's token
    assert b"token" not in step.to_upstream[0]
    connack = decode_packet(step.to_client[0], level)
    assert isinstance(connack, Connack) and connack.reason_code == 0
    if level == 5:
        assert connack.properties.get(PropertyId.MAXIMUM_PACKET_SIZE) == 4096
    assert s.identity is not None and s.identity.binding("client_id").values == ("c1",)


def test_v5_authentication_data_never_forwarded() -> None:
    props = Properties(
        [(PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"the-token")]
    )
    _, step = connected(5, Connect("c1", protocol_level=5, properties=props))
    up = decode_packet(step.to_upstream[0], 5)
    assert isinstance(up, Connect)
    assert PropertyId.AUTHENTICATION_METHOD not in up.properties
    assert b"the-token" not in step.to_upstream[0]


def test_nothing_upstream_before_authentication() -> None:
    s = new_session()
    data = encode(Connect("c1"), 4) + encode(Publish("a/b", b"early", 0), 4)
    step = s.receive_from_client(data)
    assert step.to_upstream == [] and not actions(step, OpenUpstream)
    assert s.state is SessionState.AUTHENTICATING
    # More early packets are held, not forwarded.
    assert s.receive_from_client(encode(Pingreq(), 4)).to_upstream == []
    step = s.auth_failed("bad_signature", 0x86, 0x04)
    assert decode_all(step.to_client, 4) == [Connack(False, 0x04)]
    assert step.to_upstream == [] and isinstance(step.close, Close)
    assert [a.reason for a in actions(step, AuditEvent)] == ["bad_signature"]  # type: ignore[attr-defined]
    assert s.upstream_connected().to_upstream == []  # a late callback opens nothing


def test_early_packets_flushed_after_connack_in_order() -> None:
    s = new_session()
    s.receive_from_client(encode(Connect("c1"), 4) + encode(Publish("a/b", b"1", 0), 4))
    s.receive_from_client(encode(Publish("a/b", b"2", 0), 4))
    s.auth_succeeded(ALICE, "alice:c1")
    s.upstream_connected()
    step = s.receive_from_upstream(encode(Connack(False, 0), 4))
    pubs = decode_all(step.to_upstream, 4)
    assert [p.payload for p in pubs] == [b"1", b"2"]  # type: ignore[attr-defined]


def test_early_data_is_bounded() -> None:
    s = new_session()
    s.receive_from_client(encode(Connect("c1"), 4))
    big = encode(Publish("a", b"x" * 4000, 0), 4)
    step = Step()
    for _ in range(40):
        step = s.receive_from_client(big)
        if step.close:
            break
    assert step.close is not None and step.close.reason == "early_data_limit"


@pytest.mark.parametrize("level", [4, 5])
def test_upstream_unreachable_connack(level: int) -> None:
    s = new_session()
    s.receive_from_client(encode(Connect("c1", protocol_level=level), level))
    s.auth_succeeded(ALICE, "alice:c1")
    step = s.upstream_failed("ConnectionRefusedError")
    connack = decode_packet(step.to_client[0], level)
    assert isinstance(connack, Connack)
    assert connack.reason_code == (0x88 if level == 5 else 0x03)
    assert step.close is not None


def test_connect_must_come_first() -> None:
    s = new_session()
    step = s.receive_from_client(encode(Publish("a", b"x", 0), 4))
    assert step.close is not None and step.to_upstream == []


@pytest.mark.parametrize("level", [4, 5])
def test_second_connect_is_protocol_error(level: int) -> None:
    s, _ = connected(level)
    step = s.receive_from_client(encode(Connect("c2", protocol_level=level), level))
    assert step.to_upstream == []
    assert step.close is not None
    if level == 5:
        assert decode_all(step.to_client, 5) == [Disconnect(0x82)]
    else:
        assert step.to_client == []


def test_forwarded_packets_keep_their_bytes() -> None:
    s, _ = connected(4)
    raw = encode(Publish("a/b", b"payload", 1, packet_id=7), 4)
    assert s.receive_from_client(raw).to_upstream == [raw]
    ack = encode(Puback(7), 4)
    assert s.receive_from_upstream(ack).to_client == [ack]


def test_split_at_every_byte_and_coalesced() -> None:
    s, _ = connected(4)
    packets = [
        encode(Publish("t/1", b"x" * 10, 0), 4),
        encode(Pingreq(), 4),
        encode(Subscribe(3, (Subscription("t/#", 1),)), 4),
    ]
    stream = b"".join(packets)
    out: list[bytes] = []
    for i in range(len(stream)):
        out += s.receive_from_client(stream[i : i + 1]).to_upstream
    assert out == packets
    assert s.receive_from_client(stream).to_upstream == packets
    downstream = encode(Suback(3, (1,)), 4) + encode(Pingresp(), 4)
    assert b"".join(s.receive_from_upstream(downstream).to_client) == downstream


@pytest.mark.parametrize(
    ("data", "v5_code"),
    [
        (bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), 0x81),  # remaining length of 5 bytes
        (bytes([0x36, 0x03, 0x00, 0x01, 0x61]), 0x81),  # PUBLISH QoS 3
        (bytes([0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]), 0x81),  # SUBSCRIBE flags 0000
        (bytes([0x30, 0xFF, 0x7F]), 0x95),  # 16 KiB > max_packet_size 4096
    ],
)
def test_malformed_from_client(data: bytes, v5_code: int) -> None:
    s, _ = connected(5)
    step = s.receive_from_client(data)
    assert step.to_upstream == []
    assert decode_all(step.to_client, 5) == [Disconnect(v5_code)]
    assert step.close is not None
    assert actions(step, AuditEvent)


def test_malformed_connect_v5_gets_connack() -> None:
    s = new_session()
    good = encode(Connect("c1", protocol_level=5), 5)
    bad = good[:9] + bytes([good[9] | 0x01]) + good[10:]  # reserved CONNECT flag set
    step = s.receive_from_client(bad)
    assert decode_all(step.to_client, 5) == [Connack(False, 0x81)]
    assert step.close is not None


def test_unknown_protocol_level_refused() -> None:
    s = new_session()
    good = encode(Connect("c1", protocol_level=4), 4)
    bad = good[:8] + bytes([6]) + good[9:]  # protocol level 6
    step = s.receive_from_client(bad)
    assert decode_all(step.to_client, 4) == [Connack(False, 0x01)]
    assert step.close is not None and step.to_upstream == []


def test_empty_client_id_assigned_v5() -> None:
    s, step = connected(5, Connect("", protocol_level=5))
    connack = decode_packet(step.to_client[0], 5)
    assert isinstance(connack, Connack)
    assert connack.properties.get(PropertyId.ASSIGNED_CLIENT_IDENTIFIER) == "assigned-1"
    assert s.client_id == "assigned-1"


def test_empty_client_id_v311_needs_clean_session() -> None:
    s = new_session()
    step = s.receive_from_client(encode(Connect("", clean_start=False), 4))
    assert decode_all(step.to_client, 4) == [Connack(False, 0x02)]
    s2 = new_session()
    assert actions(s2.receive_from_client(encode(Connect("", clean_start=True), 4)), Authenticate)


def test_connect_timeout() -> None:
    s = new_session()
    assert s.next_deadline() == NOW + 10.0
    assert s.handle_timer(NOW + 5).close is None
    step = s.handle_timer(NOW + 10.0)
    assert step.close is not None and step.close.reason == "connect_timeout"


def test_token_expiry_disconnects_v5() -> None:
    s, _ = connected(5)
    assert s.next_deadline() == NOW + 3600
    step = s.handle_timer(NOW + 3600)
    assert decode_all(step.to_client, 5) == [Disconnect(0xA0)]
    assert step.close is not None


JWT_METHOD = Properties([(PropertyId.AUTHENTICATION_METHOD, "jwt")])


def jwt_connected() -> Session:
    s, _ = connected(5, Connect("c1", protocol_level=5, keep_alive=0, properties=JWT_METHOD))
    return s


def test_reauthentication_rearms_expiry_and_is_not_forwarded() -> None:
    s = jwt_connected()
    auth = Auth(
        0x19,
        Properties(
            [(PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"fresh")]
        ),
    )
    step = s.receive_from_client(encode(auth, 5))
    assert step.to_upstream == []
    assert [a.token for a in actions(step, Reauthenticate)] == ["fresh"]  # type: ignore[attr-defined]
    fresh = Identity.from_values({"user_id": "alice"}, expires_at=NOW + 7200)
    step = s.reauth_succeeded(fresh)
    reply = decode_packet(step.to_client[0], 5)
    assert isinstance(reply, Auth) and reply.reason_code == 0
    assert s.next_deadline() == NOW + 7200
    assert s.handle_timer(NOW + 3601).close is None


def test_auth_without_method_in_connect_is_protocol_error() -> None:
    s, _ = connected(5)  # CONNECT named no Authentication Method: [MQTT-4.12.0-6]
    auth = Auth(
        0x19,
        Properties(
            [(PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"fresh")]
        ),
    )
    step = s.receive_from_client(encode(auth, 5))
    assert decode_all(step.to_client, 5) == [Disconnect(0x82)]
    assert step.to_upstream == [] and step.close is not None


def test_failed_reauthentication_disconnects() -> None:
    s = jwt_connected()
    auth = Auth(
        0x19,
        Properties(
            [(PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"bad")]
        ),
    )
    s.receive_from_client(encode(auth, 5))
    step = s.reauth_failed("bad_signature")
    assert decode_all(step.to_client, 5) == [Disconnect(0x87)]
    assert step.close is not None


def test_shutdown_v5_disconnect_8b() -> None:
    s, _ = connected(5)
    step = s.shutdown()
    assert decode_all(step.to_client, 5) == [Disconnect(0x8B)]
    assert decode_all(step.to_upstream, 5) == [Disconnect(0)]


def test_client_disconnect_forwarded_then_closed() -> None:
    s, _ = connected(4)
    raw = encode(Disconnect(), 4)
    step = s.receive_from_client(raw)
    assert step.to_upstream == [raw] and step.close is not None


def test_will_kept_upstream() -> None:
    c = Connect("c1", will=Will("w/t", b"gone", 1, True))
    _, step = connected(4, c)
    up = decode_packet(step.to_upstream[0], 4)
    assert isinstance(up, Connect) and up.will == Will("w/t", b"gone", 1, True)


def test_broker_refusal_forwarded() -> None:
    s = new_session()
    s.receive_from_client(encode(Connect("c1"), 4))
    s.auth_succeeded(ALICE, "alice:c1")
    s.upstream_connected()
    step = s.receive_from_upstream(encode(Connack(False, 5), 4))
    assert decode_all(step.to_client, 4) == [Connack(False, 5)]
    assert step.close is not None


def test_server_only_packet_from_client_refused() -> None:
    s, _ = connected(5)
    step = s.receive_from_client(encode(Suback(1, (0,)), 5))
    assert step.to_upstream == [] and step.close is not None


def test_broker_gone_v5_client_told() -> None:
    s, _ = connected(5)
    step = s.upstream_closed()
    assert decode_all(step.to_client, 5) == [Disconnect(0x80)]
    assert step.close is not None
    s4, _ = connected(4)
    step = s4.upstream_closed()
    assert step.to_client == [] and step.close is not None


def test_idle_session_keeps_no_token_will_or_connect_bytes() -> None:
    """Issue 7 (memory per idle connection): once the broker has its own CONNECT, the
    client's token, will and CONNECT bytes are not held for the connection's life."""
    props = Properties(
        [(PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"the-token")]
    )
    c = Connect(
        "c1",
        protocol_level=5,
        username="u",
        password=b"token",
        keep_alive=30,
        will=Will("w/t", b"gone", 1, True),
        properties=props,
    )
    s, step = connected(5, c)
    up = decode_packet(step.to_upstream[0], 5)
    assert isinstance(up, Connect) and up.will is not None  # the broker got the will
    assert s.connect is not None
    assert s.connect.password is None and s.connect.will is None
    assert PropertyId.AUTHENTICATION_DATA not in s.connect.properties
    # What is read later stays: the method (re-authentication) and the keep-alive.
    assert s.connect.properties.get(PropertyId.AUTHENTICATION_METHOD) == "jwt"
    assert s.connect.keep_alive == 30
    assert s._from_client.buffered == 0 and s._from_client._buf == b""
    assert not hasattr(s, "__dict__")  # slotted: no per-session dict
