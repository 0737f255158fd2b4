"""Property tests: decode(encode(p)) == p for every packet type in v3.1.1 and v5."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt import (
    MQTT_5,
    MQTT_31,
    MQTT_311,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    PropertyId,
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
    Will,
    decode_packet,
    encode,
)
from gateway.mqtt.constants import (
    AUTH_REASON_CODES,
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    PUBACK_REASON_CODES,
    PUBREL_REASON_CODES,
    SUBACK_REASON_CODES,
    SUBACK_RETURN_CODES_V3,
    UNSUBACK_REASON_CODES,
    VBI_MAX,
)
from gateway.mqtt.properties import SPECS, WILL_PROPERTIES, PropertyKind, PropertyValue
from gateway.mqtt.topics import topic_filter_problem

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# UTF-8 strings the spec allows: no U+0000, no surrogates (v5 1.5.4).
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
level_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/+#"), max_size=6
)
topic_names = st.lists(level_text, min_size=1, max_size=4).map("/".join).filter(bool)
topic_filters = (
    st.tuples(st.lists(level_text | st.just("+"), min_size=1, max_size=4), st.booleans())
    .map(lambda t: "/".join([*t[0], "#"] if t[1] else t[0]))
    .filter(lambda f: topic_filter_problem(f) is None)
)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=64)


def property_values(pid: int) -> st.SearchStrategy[PropertyValue]:
    spec = SPECS[pid]
    kind = spec.kind
    if spec.check == "zero_or_one":
        return st.integers(0, 1)
    low = 1 if spec.check == "non_zero" else 0
    if kind is PropertyKind.BYTE:
        return st.integers(low, 0xFF)
    if kind is PropertyKind.TWO_BYTE:
        return st.integers(low, 0xFFFF)
    if kind is PropertyKind.FOUR_BYTE:
        return st.integers(low, 0xFFFF_FFFF)
    if kind is PropertyKind.VBI:
        return st.integers(low, VBI_MAX)
    if kind is PropertyKind.BINARY:
        return st.binary(max_size=8)
    if kind is PropertyKind.UTF8_PAIR:
        return st.tuples(text, text)
    if spec.check == "topic_name":
        return topic_names
    return text


def properties_for(context: int) -> st.SearchStrategy[Properties]:
    bit = 1 << context
    allowed = [pid for pid, spec in SPECS.items() if spec.allowed & bit]

    @st.composite
    def build(draw: Any) -> Properties:
        items: list[tuple[int, PropertyValue]] = []
        for pid in draw(st.lists(st.sampled_from(allowed), max_size=6)):
            spec = SPECS[pid]
            if spec.repeatable & bit or all(p != pid for p, _ in items):
                items.append((pid, draw(property_values(pid))))
        props = Properties(items)
        if (
            context == PacketType.CONNECT
            and PropertyId.AUTHENTICATION_DATA in props
            and PropertyId.AUTHENTICATION_METHOD not in props
        ):
            props = props.without(PropertyId.AUTHENTICATION_DATA)
        return props

    return build()


def props(level: int, context: int) -> st.SearchStrategy[Properties]:
    return properties_for(context) if level == MQTT_5 else st.just(Properties.EMPTY)


def codes(level: int, allowed: frozenset[int]) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(allowed)) if level == MQTT_5 else st.just(0)


@st.composite
def connects(draw: Any, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(payloads),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(props(level, WILL_PROPERTIES)),
        )
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=8))
    if level != MQTT_5 and username is None:
        password = None
    return Connect(
        client_id=draw(text),
        protocol_level=level,
        protocol_name="MQIsdp" if level == MQTT_31 else "MQTT",
        clean_start=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=password,
        will=will,
        properties=draw(props(level, PacketType.CONNECT)),
    )


@st.composite
def connacks(draw: Any, level: int) -> Connack:
    allowed = CONNACK_REASON_CODES if level == MQTT_5 else frozenset(range(6))
    code = draw(st.sampled_from(sorted(allowed)))
    present = draw(st.booleans()) if code == 0 else False
    return Connack(present, code, draw(props(level, PacketType.CONNACK)))


@st.composite
def publishes(draw: Any, level: int) -> Publish:
    qos = draw(st.integers(0, 2))
    properties = draw(props(level, PacketType.PUBLISH))
    topic = draw(topic_names)
    if level == MQTT_5 and PropertyId.TOPIC_ALIAS in properties and draw(st.booleans()):
        topic = ""
    return Publish(
        topic,
        draw(payloads),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
        properties,
    )


def acks(cls: Any, allowed: frozenset[int], level: int) -> st.SearchStrategy[Packet]:
    context = cls.packet_type
    return st.builds(cls, packet_ids, codes(level, allowed), props(level, context))


@st.composite
def subscriptions(draw: Any, level: int) -> Subscription:
    topic_filter = draw(topic_filters)
    if level != MQTT_5:
        return Subscription(topic_filter, draw(st.integers(0, 2)))
    return Subscription(
        topic_filter,
        draw(st.integers(0, 2)),
        draw(st.booleans()) and not topic_filter.startswith("$share/"),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


def packets(level: int) -> st.SearchStrategy[Packet]:
    suback_codes = SUBACK_REASON_CODES if level == MQTT_5 else SUBACK_RETURN_CODES_V3
    options: list[st.SearchStrategy[Any]] = [
        connects(level),
        connacks(level),
        publishes(level),
        acks(Puback, PUBACK_REASON_CODES, level),
        acks(Pubrec, PUBACK_REASON_CODES, level),
        acks(Pubrel, PUBREL_REASON_CODES, level),
        acks(Pubcomp, PUBREL_REASON_CODES, level),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(subscriptions(level), min_size=1, max_size=4).map(tuple),
            props(level, PacketType.SUBSCRIBE),
        ),
        st.builds(
            Suback,
            packet_ids,
            st.lists(st.sampled_from(sorted(suback_codes)), min_size=1, max_size=4).map(tuple),
            props(level, PacketType.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(topic_filters, min_size=1, max_size=4).map(tuple),
            props(level, PacketType.UNSUBSCRIBE),
        ),
        st.builds(
            Unsuback,
            packet_ids,
            (
                st.lists(st.sampled_from(sorted(UNSUBACK_REASON_CODES)), min_size=1, max_size=4)
                if level == MQTT_5
                else st.just([])
            ).map(tuple),
            props(level, PacketType.UNSUBACK),
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(
            Disconnect,
            codes(level, DISCONNECT_REASON_CODES),
            props(level, PacketType.DISCONNECT),
        ),
    ]
    if level == MQTT_5:
        options.append(
            st.builds(Auth, codes(level, AUTH_REASON_CODES), props(level, PacketType.AUTH))
        )
    return st.one_of(options)


@SETTINGS
@given(packets(MQTT_5))
def test_roundtrip_v5(packet: Packet) -> None:
    assert decode_packet(encode(packet, MQTT_5), MQTT_5) == packet


@SETTINGS
@given(packets(MQTT_311))
def test_roundtrip_v311(packet: Packet) -> None:
    assert decode_packet(encode(packet, MQTT_311), MQTT_311) == packet


@SETTINGS
@given(connects(MQTT_31))
def test_roundtrip_v31_connect(packet: Connect) -> None:
    assert decode_packet(encode(packet, MQTT_31), MQTT_31) == packet


@SETTINGS
@given(
    st.sampled_from([MQTT_311, MQTT_5]).flatmap(
        lambda level: st.tuples(
            st.just(level),
            st.lists(packets(level), min_size=1, max_size=6),
            st.lists(st.integers(0, 4000), max_size=6),
        )
    )
)
def test_stream_roundtrip_with_arbitrary_splits(args: tuple[int, list[Packet], list[int]]) -> None:
    level, sent, cuts = args
    encoded = [encode(packet, level) for packet in sent]
    data = b"".join(encoded)
    decoder = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
    received = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        decoder.feed(data[start:cut])
        start = cut
        while (raw := decoder.next_packet()) is not None:
            received.append(raw)
    assert [r.packet for r in received] == sent
    assert [r.raw for r in received] == encoded
    assert decoder.buffered == 0
