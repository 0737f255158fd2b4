"""Properties as a value, the v5 property table, topic syntax, and immutability."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.mqtt import (
    MQTT_5,
    PacketDecoder,
    Properties,
    PropertyId,
    Publish,
    ReasonCode,
    encode,
)
from gateway.mqtt.constants import ConnackV3, PacketType, connack_v3_code
from gateway.mqtt.properties import SPECS, WILL_PROPERTIES, PropertyKind
from gateway.mqtt.topics import topic_filter_problem, topic_name_problem

P = PropertyId


def test_properties_api() -> None:
    props = Properties(
        [(P.USER_PROPERTY, ("a", "1")), (P.CONTENT_TYPE, "text"), (P.USER_PROPERTY, ("b", "2"))]
    )
    assert props.get(P.CONTENT_TYPE) == "text"
    assert props.get(P.TOPIC_ALIAS) is None
    assert props.get(P.TOPIC_ALIAS, 5) == 5
    assert props.get_all(P.USER_PROPERTY) == (("a", "1"), ("b", "2"))
    assert P.CONTENT_TYPE in props
    assert len(props) == 3
    assert list(props)[1] == (P.CONTENT_TYPE, "text")
    replaced = props.with_(P.USER_PROPERTY, ("c", "3"))
    assert list(replaced) == [(P.USER_PROPERTY, ("c", "3")), (P.CONTENT_TYPE, "text")]
    assert props.with_(P.TOPIC_ALIAS, 4).get(P.TOPIC_ALIAS) == 4
    assert props.without(P.USER_PROPERTY) == Properties([(P.CONTENT_TYPE, "text")])
    assert props.with_added(P.USER_PROPERTY, ("d", "4")).get_all(P.USER_PROPERTY)[-1] == ("d", "4")
    assert len(props) == 3  # unchanged by all of the above
    assert not Properties.EMPTY
    assert props
    assert Properties([(0x23, 1)]) == Properties([(P.TOPIC_ALIAS, 1)])
    assert hash(Properties([(0x23, 1)])) == hash(Properties([(P.TOPIC_ALIAS, 1)]))
    assert "CONTENT_TYPE" in repr(props)


def test_properties_are_immutable() -> None:
    props = Properties([(P.CONTENT_TYPE, "text")])
    with pytest.raises(AttributeError):
        props._items = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        props.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pid", "value"),
    [(P.CONTENT_TYPE, b"x"), (P.CORRELATION_DATA, "x"), (P.TOPIC_ALIAS, "1"),
     (P.USER_PROPERTY, ("a",)), (P.TOPIC_ALIAS, True), (0x04, 1)],
)  # fmt: skip
def test_properties_check_value_types(pid: int, value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Properties([(pid, value)])  # type: ignore[list-item]


def test_the_property_table_has_all_27_properties_with_their_kinds() -> None:
    assert len(PropertyId) == 27
    assert set(SPECS) == {int(p) for p in PropertyId}
    assert SPECS[P.SUBSCRIPTION_IDENTIFIER].kind is PropertyKind.VBI
    assert SPECS[P.USER_PROPERTY].kind is PropertyKind.UTF8_PAIR
    assert SPECS[P.CORRELATION_DATA].kind is PropertyKind.BINARY
    assert SPECS[P.MAXIMUM_PACKET_SIZE].kind is PropertyKind.FOUR_BYTE
    will = 1 << WILL_PROPERTIES
    assert SPECS[P.WILL_DELAY_INTERVAL].allowed == will
    assert not SPECS[P.REASON_STRING].allowed & (1 << PacketType.PUBLISH)
    assert not SPECS[P.USER_PROPERTY].allowed & (1 << PacketType.PINGREQ)


def test_reason_codes_and_v3_connack_mapping() -> None:
    assert ReasonCode.NORMAL_DISCONNECTION == ReasonCode.SUCCESS == 0
    assert ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED == 0xA2
    assert len({int(code) for code in ReasonCode}) == 43
    assert connack_v3_code(ReasonCode.SUCCESS) is ConnackV3.ACCEPTED
    assert connack_v3_code(ReasonCode.SERVER_UNAVAILABLE) is ConnackV3.SERVER_UNAVAILABLE
    assert connack_v3_code(ReasonCode.BAD_USER_NAME_OR_PASSWORD) is (
        ConnackV3.BAD_USER_NAME_OR_PASSWORD
    )
    assert connack_v3_code(ReasonCode.QUOTA_EXCEEDED) is ConnackV3.NOT_AUTHORIZED


def test_decoded_publish_is_a_normal_frozen_value() -> None:
    props = Properties([(P.CONTENT_TYPE, "a")])
    packet = Publish("t", b"x", 1, packet_id=3, properties=props)
    decoder = PacketDecoder(max_packet_size=100, protocol_level=MQTT_5)
    decoder.feed(encode(packet, MQTT_5))
    raw = decoder.next_packet()
    assert raw is not None
    assert raw.packet == packet
    assert hash(raw.packet) == hash(packet)
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw.packet.topic = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw.raw = b""  # type: ignore[misc]
    assert dataclasses.replace(raw.packet, topic="u").topic == "u"


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [("a", True), ("#", True), ("+", True), ("a/+/b/#", True), ("/", True), ("+/+", True),
     ("$SYS/#", True), ("$share/g/a/#", True), ("$share/g/#", True), ("", False),
     ("a/#/b", False), ("a#", False), ("a/b#", False), ("a+/b", False), ("$share/g", False),
     ("$share//a", False), ("$share/g+/a", False), ("$share/g/", False), ("a/+b", False)],
)  # fmt: skip
def test_topic_filter_syntax(topic_filter: str, valid: bool) -> None:
    assert (topic_filter_problem(topic_filter) is None) is valid


@pytest.mark.parametrize(
    ("topic", "valid"), [("a/b", True), ("/", True), ("", False), ("a/+", False), ("#", False)]
)
def test_topic_name_syntax(topic: str, valid: bool) -> None:
    assert (topic_name_problem(topic) is None) is valid
