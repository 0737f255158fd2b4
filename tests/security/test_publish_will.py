"""Publish and will authorization (issue 5, items 1-2): topic, QoS and retain each checked;
refusals acknowledged with 0x87 (v5) and never forwarded; a refused will refuses the CONNECT
and opens no broker connection."""

from __future__ import annotations

import pytest

from gateway.mqtt.packets import (
    Connack,
    Connect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Will,
)
from tests.security.conftest import Attacker, Witness, marker, session, user
from tests.support.gateway_thread import GatewayThread

LEVELS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def code(level: int) -> int:
    return 0x87 if level == 5 else 0


@pytest.mark.parametrize("level", LEVELS)
async def test_other_users_topic(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{user()}/own/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, code(level))
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_qos0_refused_silently(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{user()}/own/x", m, 0), Pingreq())
        assert await w.recv() == Pingresp()  # nothing answered the refused QoS 0
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_qos2_refused_flow_completed(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/wide/secret", m, 2, packet_id=5))
        assert await w.recv() == Pubrec(5, code(level))
        await w.send(Pubrel(5))
        assert await w.recv() == Pubcomp(5)
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_retain_without_permission(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/wide/r", m, 1, retain=True, packet_id=1))
        assert await w.recv() == Puback(1, code(level))
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_qos_above_allowed(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/low/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, code(level))
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_deny_inside_allow(gw: GatewayThread, witness: Witness, level: int) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish(f"sec/{w.sub}/wide/secret", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, code(level))
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_subscribe_only_topic_cannot_be_published(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    m = marker()
    async with session(gw, level) as w:
        await w.send(Publish("sec/feed/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, code(level))
    witness.nothing(m)


WILLS = [
    pytest.param("sec/{other}/will", 0, False, id="other_users_topic"),
    pytest.param("sec/{u}/will", 2, False, id="qos_too_high"),
    pytest.param("sec/{u}/will", 0, True, id="retain_not_allowed"),
    pytest.param("$SYS/will", 0, False, id="sys"),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("topic", "qos", "retain"), WILLS)
async def test_refused_will(
    gw: GatewayThread, witness: Witness, level: int, topic: str, qos: int, retain: bool
) -> None:
    u = user()
    m = marker()
    will = Will(topic.replace("{u}", u).replace("{other}", user()), m, qos, retain)
    async with Attacker(gw, level=level) as w:
        got = await w.connect(
            Connect(
                "c-" + u,
                protocol_level=level,
                username="u",
                password=gw.idp.token(u).encode(),
                will=will,
            )
        )
        assert got == Connack(False, 0x87 if level == 5 else 0x05)
        await w.expect_closed()
    witness.no_upstream_connection()
    witness.nothing(m)


@pytest.mark.parametrize("level", LEVELS)
async def test_allowed_will_is_the_control(gw: GatewayThread, witness: Witness, level: int) -> None:
    u = user()
    async with Attacker(gw, level=level) as w:
        got = await w.connect(
            Connect(
                "c-" + u,
                protocol_level=level,
                username="u",
                password=gw.idp.token(u).encode(),
                will=Will(f"sec/{u}/will", b"w", 1),
            )
        )
        assert isinstance(got, Connack) and got.reason_code == 0
    assert witness.new_connections() == 1
