"""Topic attacks: NUL, invalid UTF-8, wildcards in a topic name, $SYS, case, a leading '/',
deep and long topics. Each is refused with its code and nothing reaches the broker."""

from __future__ import annotations

import pytest

from gateway.mqtt.packets import Puback, Publish, Suback, Subscribe, Subscription
from tests.security.conftest import Witness, closed_with, marker, session
from tests.support.gateway_thread import GatewayThread

LEVELS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def raw_publish(topic: bytes, payload: bytes, level: int) -> bytes:
    props = b"\x00" if level == 5 else b""
    body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01" + props + payload
    return bytes([0x32, len(body)]) + body


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"/own/a\x00b", id="nul"),
        pytest.param(b"/own/\xc3\x28", id="invalid_utf8"),
        pytest.param(b"/own/\xed\xa0\x80", id="surrogate"),
        pytest.param(b"/own/\xc0\xaf", id="overlong_slash"),
    ],
)
async def test_bad_topic_bytes_are_malformed(
    gw: GatewayThread, witness: Witness, level: int, bad: bytes
) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send_raw(raw_publish(f"sec/{w.sub}".encode() + bad, m, level))
        await closed_with(w, level, 0x81)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("suffix", ["/own/#", "/own/+/x", "/own/a#"])
async def test_wildcard_in_topic_name(
    gw: GatewayThread, witness: Witness, level: int, suffix: str
) -> None:
    """MQTT 5 spec 3.3.2.1: a Topic Name has no wildcards: 0x90 Topic Name invalid."""
    m = marker()
    async with session(gw, level) as w:
        await w.send_raw(raw_publish(f"sec/{w.sub}{suffix}".encode(), m, level))
        await closed_with(w, level, 0x90)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "topic",
    [
        "$SYS/broker/x",
        "$SYS/sec/{u}/own/x",
        "$share/g/sec/{u}/own/x",
        "SEC/{u}/own/x",
        "sec/{U}/own/x",
        "/sec/{u}/own/x",
        "sec//{u}/own/x",
        "sec/{u}/OWN/x",
        "sec/{u} /own/x",
    ],
)
async def test_look_alike_topics_refused(
    gw: GatewayThread, witness: Witness, level: int, topic: str
) -> None:
    m = marker()
    async with session(gw, level) as w:
        t = topic.replace("{u}", w.sub).replace("{U}", w.sub.upper())
        await w.send(Publish(t, m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x87 if level == 5 else 0)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_sys_subscription_refused(gw: GatewayThread, witness: Witness, level: int) -> None:
    async with session(gw, level) as w:
        await w.send(Subscribe(1, (Subscription("$SYS/#", 0), Subscription("#", 0))))
        refused = 0x87 if level == 5 else 0x80
        assert await w.recv() == Suback(1, (refused, refused))
    witness.nothing(b"$SYS/#")


@pytest.mark.parametrize("level", LEVELS)
async def test_deep_topic(gw: GatewayThread, witness: Witness, level: int) -> None:
    """Past max_topic_levels (32): v5 PUBACK 0x90 Topic Name invalid."""
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/own/" + "/".join("d" * 40), m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x90 if level == 5 else 0)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_long_topic(gw: GatewayThread, witness: Witness, level: int) -> None:
    """Past max_topic_length (1024 bytes): v5 PUBACK 0x90."""
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/own/" + "x" * 2000, m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x90 if level == 5 else 0)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_deep_filter(gw: GatewayThread, witness: Witness, level: int) -> None:
    async with session(gw, level) as w:
        flt = f"sec/{w.sub}/own/" + "/".join("d" * 40)
        await w.send(Subscribe(1, (Subscription(flt, 0),)))
        assert await w.recv() == Suback(1, (0x8F if level == 5 else 0x80,))
    witness.nothing(flt)
