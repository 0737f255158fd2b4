"""Byte-level tests of the session's policy enforcement (issue 5), no sockets."""

from __future__ import annotations

import orjson

from gateway.acl import compile_policy
from gateway.core.outputs import AuditEvent, Close
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
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)
from gateway.mqtt.properties import Properties

NOW = 1_000.0
SETTINGS = SessionSettings(max_packet_size=65536, connect_timeout_s=10.0)


def policy(*rules: dict[str, object]) -> object:
    doc = {"version": "2.0", "default_action": "deny", "rules": list(rules)}
    return compile_policy(orjson.loads(orjson.dumps(doc)))


BASE = policy(
    {"id": "own", "topic": "u/{user_id}/#", "action": "all", "effect": "allow", "qos": [0, 1, 2]},
    {"id": "low", "topic": "low/#", "action": "subscribe", "effect": "allow", "qos": [0, 1]},
    {
        "id": "grp",
        "topic": "jobs/#",
        "action": "subscribe",
        "effect": "allow",
        "share_group": "workers",
    },
)
ALICE = Identity.from_values({"user_id": "alice", "role": ["dev"]})


def session(level: int = 5, pol: object = BASE) -> Session:
    s = Session(SETTINGS, NOW, pol)  # type: ignore[arg-type]
    method = Properties([(PropertyId.AUTHENTICATION_METHOD, "jwt")]) if level == 5 else None
    connect = Connect("c1", protocol_level=level, properties=method or Properties.EMPTY)
    s.receive_from_client(encode(connect, level))
    s.auth_succeeded(ALICE, "alice:c1")
    s.upstream_connected()
    s.receive_from_upstream(encode(Connack(False, 0), level))
    assert s.state is SessionState.CONNECTED
    return s


def test_suback_merged_in_order_with_broker_downgrade() -> None:
    s = session()
    sub = Subscribe(
        5, (Subscription("u/alice/a", 2), Subscription("u/bob/a", 1), Subscription("low/x", 2))
    )
    step = s.receive_from_client(encode(sub, 5))
    fwd = decode_packet(step.to_upstream[0], 5)
    assert isinstance(fwd, Subscribe)
    # Only the allowed filters, with the policy's downgrade (low/x: 2 -> 1).
    assert [(x.topic_filter, x.qos) for x in fwd.subscriptions] == [("u/alice/a", 2), ("low/x", 1)]
    # The broker grants less than asked for the first: its code is kept.
    step = s.receive_from_upstream(encode(Suback(5, (1, 1)), 5))
    assert decode_packet(step.to_client[0], 5) == Suback(5, (1, 0x87, 1))
    assert set(s.subscriptions.active) == {"u/alice/a", "low/x"}


def test_subscription_options_and_identifier_pass_through() -> None:
    s = session()
    props = Properties([(PropertyId.SUBSCRIPTION_IDENTIFIER, 42)])
    sub = Subscribe(
        6,
        (Subscription("u/alice/x", 1, no_local=True, retain_as_published=True, retain_handling=2),),
        props,
    )
    raw = encode(sub, 5)
    assert s.receive_from_client(raw).to_upstream == [raw]  # untouched: forwarded as is


def test_refused_delivery_acknowledged_to_broker() -> None:
    s = session()
    step = s.receive_from_upstream(encode(Publish("u/bob/x", b"no", 1, packet_id=9), 5))
    assert step.to_client == []
    assert decode_packet(step.to_upstream[0], 5) == Puback(9)
    step = s.receive_from_upstream(encode(Publish("u/bob/x", b"no", 2, packet_id=10), 5))
    assert step.to_client == [] and decode_packet(step.to_upstream[0], 5) == Pubrec(10)
    step = s.receive_from_upstream(encode(Pubrel(10), 5))
    assert step.to_client == [] and decode_packet(step.to_upstream[0], 5) == Pubcomp(10)
    # A PUBREL for a delivery the client did get goes to the client.
    raw = encode(Pubrel(11), 5)
    assert s.receive_from_upstream(raw).to_client == [raw]
    [event] = [a for a in step.actions if isinstance(a, AuditEvent)] or [None]
    assert event is None  # the PUBREL itself is no decision


def test_refused_delivery_audited() -> None:
    s = session()
    step = s.receive_from_upstream(encode(Publish("u/bob/x", b"no", 0), 5))
    [event] = [a for a in step.actions if isinstance(a, AuditEvent)]
    assert (event.kind, event.verdict, event.attributes["topic"]) == ("delivery", "deny", "u/bob/x")


def test_broker_aliases_resolved_for_the_delivery_check() -> None:
    s = session()
    alias = Properties([(PropertyId.TOPIC_ALIAS, 3)])
    step = s.receive_from_upstream(encode(Publish("u/alice/a", b"1", 0, properties=alias), 5))
    out = decode_packet(step.to_client[0], 5)
    assert isinstance(out, Publish) and out.topic == "u/alice/a"
    assert PropertyId.TOPIC_ALIAS not in out.properties
    step = s.receive_from_upstream(encode(Publish("u/bob/a", b"2", 0, properties=alias), 5))
    assert step.to_client == []
    step = s.receive_from_upstream(encode(Publish("", b"3", 0, properties=alias), 5))
    assert step.to_client == []  # alias 3 now stands for u/bob/a: still refused


def test_shared_subscription_delivery_allowed_through_its_group() -> None:
    s = session()
    step = s.receive_from_client(
        encode(Subscribe(2, (Subscription("$share/workers/jobs/#", 1),)), 5)
    )
    assert step.to_upstream
    s.receive_from_upstream(encode(Suback(2, (1,)), 5))
    step = s.receive_from_upstream(encode(Publish("jobs/1", b"work", 1, packet_id=4), 5))
    assert len(step.to_client) == 1
    refused = s.receive_from_client(
        encode(Subscribe(3, (Subscription("$share/other/jobs/#", 1),)), 5)
    )
    assert decode_packet(refused.to_client[0], 5) == Suback(3, (0x87,))


def test_policy_change_revokes_with_own_unsubscribe() -> None:
    s = session()
    s.receive_from_client(
        encode(Subscribe(1, (Subscription("u/alice/a", 1), Subscription("low/x", 0))), 5)
    )
    s.receive_from_upstream(encode(Suback(1, (1, 0)), 5))
    narrower = policy({"id": "low", "topic": "low/#", "action": "subscribe", "effect": "allow"})
    step = s.policy_changed(narrower)  # type: ignore[arg-type]
    unsub = decode_packet(step.to_upstream[0], 5)
    assert isinstance(unsub, Unsubscribe) and unsub.topic_filters == ("u/alice/a",)
    assert [a.kind for a in step.actions if isinstance(a, AuditEvent)] == ["revoke"]
    # The broker's UNSUBACK answers the gateway, not the client.
    assert s.receive_from_upstream(encode(Unsuback(unsub.packet_id, (0,)), 5)).to_client == []
    # Deliveries on the revoked filter are dropped at once.
    assert s.receive_from_upstream(encode(Publish("u/alice/a", b"x", 0), 5)).to_client == []
    assert len(s.receive_from_upstream(encode(Publish("low/x", b"x", 0), 5)).to_client) == 1


def test_reauthentication_with_fewer_rights_revokes() -> None:
    pol = policy(
        {"id": "dev", "topic": "dev/#", "action": "all", "effect": "allow", "when": {"role": "dev"}}
    )
    s = session(pol=pol)
    s.receive_from_client(encode(Subscribe(1, (Subscription("dev/logs", 0),)), 5))
    s.receive_from_upstream(encode(Suback(1, (0,)), 5))
    s.receive_from_client(
        encode(
            Auth(
                0x19,
                Properties(
                    [
                        (PropertyId.AUTHENTICATION_METHOD, "jwt"),
                        (PropertyId.AUTHENTICATION_DATA, b"t"),
                    ]
                ),
            ),
            5,
        )
    )
    step = s.reauth_succeeded(Identity.from_values({"user_id": "alice", "role": "viewer"}))
    unsub = [decode_packet(b, 5) for b in step.to_upstream]
    assert [u.topic_filters for u in unsub if isinstance(u, Unsubscribe)] == [("dev/logs",)]


def test_client_alias_zero_is_invalid() -> None:
    s = session()
    step = s.receive_from_client(
        encode(
            Publish("u/alice/a", b"x", 0, properties=Properties([(PropertyId.TOPIC_ALIAS, 64)])), 5
        )
    )
    assert len(step.to_upstream) == 1
    bad = encode(
        Publish("u/alice/a", b"x", 0, properties=Properties([(PropertyId.TOPIC_ALIAS, 65)])), 5
    )
    step = s.receive_from_client(bad)
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 5) == Disconnect(0x94)
    assert isinstance(step.close, Close)


def test_unknown_alias_is_protocol_error() -> None:
    s = session()
    step = s.receive_from_client(
        encode(Publish("", b"x", 0, properties=Properties([(PropertyId.TOPIC_ALIAS, 7)])), 5)
    )
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 5) == Disconnect(0x82)


def test_v311_refused_qos2_completed_by_gateway() -> None:
    s = session(level=4)
    step = s.receive_from_client(encode(Publish("u/bob/x", b"no", 2, packet_id=5), 4))
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 4) == Pubrec(5)
    step = s.receive_from_client(encode(Pubrel(5), 4))
    assert step.to_upstream == [] and decode_packet(step.to_client[0], 4) == Pubcomp(5)
