"""Arbitrary and mutated input: the decoder returns packets, asks for more, or raises MQTTError.

Nothing else may escape into the event loop (issue 2, item 4).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    MQTTError,
    PacketDecoder,
    Properties,
    PropertyId,
    Publish,
    Subscribe,
    Subscription,
    Will,
    encode,
)

SEEDS = [
    encode(
        Connect(
            "c",
            protocol_level=5,
            username="u",
            password=b"p",
            will=Will("w", b"x", 1, properties=Properties([(PropertyId.CONTENT_TYPE, "t")])),
            properties=Properties([(PropertyId.RECEIVE_MAXIMUM, 5)]),
        ),
        MQTT_5,
    ),
    encode(
        Publish(
            "a/b",
            b"payload",
            1,
            packet_id=9,
            properties=Properties([(PropertyId.USER_PROPERTY, ("k", "v"))]),
        ),
        MQTT_5,
    ),
    encode(Subscribe(3, (Subscription("a/+", 2, True, False, 1),)), MQTT_5),
    encode(Connect("c", will=Will("w", b"x")), MQTT_311),
]


def run(data: bytes, decoder: PacketDecoder) -> None:
    decoder.feed(data)
    try:
        for _ in range(len(data) + 1):
            if decoder.next_packet() is None:
                break
    except MQTTError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, MQTT_311, MQTT_5]))
def test_random_bytes(data: bytes, level: int | None) -> None:
    run(data, PacketDecoder(max_packet_size=1 << 16, protocol_level=level))
    run(data, PacketDecoder(max_packet_size=1 << 16, expect_connect=True))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_mutated_packets(seed: bytes, changes: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for index, value in changes:
        data[index % len(data)] = value
    run(bytes(data), PacketDecoder(max_packet_size=1 << 16, expect_connect=True))
    run(bytes(data), PacketDecoder(max_packet_size=1 << 16, protocol_level=MQTT_5))
