"""Micro-benchmark of the MQTT codec (gateway/mqtt): packets per second on one core.

Run: .venv/bin/python bench/codec.py
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from gateway.mqtt import MQTT_5, MQTT_311, PacketDecoder, Properties, PropertyId, Publish, encode

PAYLOAD = bytes(range(64))
ROUNDS = 200_000


def _rate(run: Callable[[], int]) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        count = run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def _decode_one_per_feed(data: bytes, level: int) -> Callable[[], int]:
    def run() -> int:
        decoder = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
        feed = decoder.feed
        next_packet = decoder.next_packet
        for _ in range(ROUNDS):
            feed(data)
            next_packet()
        return ROUNDS

    return run


def _decode_batched(data: bytes, level: int, per_feed: int) -> Callable[[], int]:
    chunk = data * per_feed

    def run() -> int:
        decoder = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
        count = 0
        for _ in range(ROUNDS // per_feed):
            decoder.feed(chunk)
            while decoder.next_packet() is not None:
                count += 1
        return count

    return run


def _decode_split(data: bytes, level: int) -> Callable[[], int]:
    half = len(data) // 2
    first, second = data[:half], data[half:]

    def run() -> int:
        decoder = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
        for _ in range(ROUNDS):
            decoder.feed(first)
            decoder.next_packet()
            decoder.feed(second)
            decoder.next_packet()
        return ROUNDS

    return run


def _encode(packet: Publish, level: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(ROUNDS):
            encode(packet, level)
        return ROUNDS

    return run


def main() -> None:
    qos0 = Publish("sensors/room-1/temperature", PAYLOAD)
    qos1 = Publish("sensors/room-1/temperature", PAYLOAD, qos=1, packet_id=42)
    v5_props = Publish(
        "sensors/room-1/temperature",
        PAYLOAD,
        qos=1,
        packet_id=42,
        properties=Properties(
            [(PropertyId.CONTENT_TYPE, "application/json"), (PropertyId.USER_PROPERTY, ("k", "v"))]
        ),
    )
    cases: list[tuple[str, Callable[[], int]]] = [
        ("decode v3.1.1 QoS0, 1 packet/feed", _decode_one_per_feed(encode(qos0, MQTT_311), 4)),
        ("decode v3.1.1 QoS1, 1 packet/feed", _decode_one_per_feed(encode(qos1, MQTT_311), 4)),
        ("decode v5 QoS1 no props, 1/feed", _decode_one_per_feed(encode(qos1, MQTT_5), 5)),
        ("decode v5 QoS1 2 props, 1/feed", _decode_one_per_feed(encode(v5_props, MQTT_5), 5)),
        ("decode v3.1.1 QoS0, 100 packets/feed", _decode_batched(encode(qos0, MQTT_311), 4, 100)),
        ("decode v3.1.1 QoS0, split in 2 feeds", _decode_split(encode(qos0, MQTT_311), 4)),
        ("encode v3.1.1 QoS1", _encode(qos1, MQTT_311)),
        ("encode v5 QoS1 2 props", _encode(v5_props, MQTT_5)),
    ]
    print(f"# {platform.python_implementation()} {platform.python_version()} {platform.machine()}")
    print(f"# PUBLISH with a {len(PAYLOAD)}-byte payload; best of 3 runs of {ROUNDS} packets")
    print(f"{'case':<42} {'packets/s':>12} {'us/packet':>10}")
    for name, run in cases:
        rate = _rate(run)
        print(f"{name:<42} {rate:>12,.0f} {1e6 / rate:>10.2f}")


if __name__ == "__main__":
    main()
