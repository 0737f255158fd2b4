"""Claim injection: a claim value that would widen or escape a topic pattern (wildcards, '/',
a leading '$', NUL, empty, missing) makes its binding unusable, and every rule that uses
it fails closed (issue 3, item 6; ACL v2 "Bindings fail closed")."""

from __future__ import annotations

import pytest

from gateway.mqtt.packets import Connack, Connect, Puback, Publish, Suback, Subscribe, Subscription
from tests.security.conftest import Attacker, Witness, marker
from tests.support.gateway_thread import GatewayThread

# agent_id values and a topic each would open if it were substituted as text.
INJECTIONS = [
    pytest.param("#", "sec/agents/other/x", id="hash"),
    pytest.param("+", "sec/agents/other/x", id="plus"),
    pytest.param("a/b", "sec/agents/a/b/x", id="slash"),
    pytest.param("$SYS", "sec/agents/$SYS/x", id="dollar"),
    pytest.param("a\x00b", "sec/agents/a", id="nul"),
    pytest.param("", "sec/agents//x", id="empty"),
]


async def connect_with(gw: GatewayThread, sub: str, **claims: object) -> Attacker:
    w = Attacker(gw, level=5)
    await w.__aenter__()
    got = await w.connect(
        Connect("c-inj", protocol_level=5, password=gw.idp.token(sub, **claims).encode())
    )
    assert isinstance(got, Connack) and got.reason_code == 0
    return w


@pytest.mark.parametrize(("value", "topic"), INJECTIONS)
async def test_agent_id_injection_publish(
    gw: GatewayThread, witness: Witness, value: str, topic: str
) -> None:
    m = marker()
    w = await connect_with(gw, "inj-user", agent_id=value)
    try:
        await w.send(Publish(topic, m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x87)
    finally:
        await w.__aexit__(None, None, None)
    witness.nothing(m)


@pytest.mark.parametrize(("value", "topic"), INJECTIONS)
async def test_agent_id_injection_subscribe(
    gw: GatewayThread, witness: Witness, value: str, topic: str
) -> None:
    w = await connect_with(gw, "inj-user", agent_id=value)
    flt = {"#": "sec/agents/#", "+": "sec/agents/+/#", "a\x00b": "sec/agents/#"}.get(
        value, topic.replace("/x", "/#")
    )
    try:
        await w.send(Subscribe(1, (Subscription(flt, 0),)))
        assert await w.recv() == Suback(1, (0x87,))
    finally:
        await w.__aexit__(None, None, None)
    witness.nothing(flt)


async def test_missing_agent_id(gw: GatewayThread, witness: Witness) -> None:
    m = marker()
    w = await connect_with(gw, "no-agent")
    try:
        await w.send(Publish("sec/agents/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x87)
    finally:
        await w.__aexit__(None, None, None)
    witness.nothing(m)


async def test_list_claim_with_a_wildcard_value(gw: GatewayThread, witness: Witness) -> None:
    """One bad value in a multi-valued claim makes the whole binding unusable."""
    m = marker()
    w = await connect_with(gw, "list-agent", agent_id=["ok", "#"])
    try:
        await w.send(Publish("sec/agents/ok/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x87)
    finally:
        await w.__aexit__(None, None, None)
    witness.nothing(m)


@pytest.mark.parametrize("sub", ["#", "+", "a/b", "$SYS", "\x00"])
async def test_subject_injection(gw: GatewayThread, witness: Witness, sub: str) -> None:
    """``sub`` feeds {user_id}: a wildcard subject opens nobody's topics."""
    m = marker()
    w = await connect_with(gw, sub)
    victim = "sec/victim/own/x"
    try:
        await w.send(Publish(victim, m, 1, packet_id=1))
        assert await w.recv() == Puback(1, 0x87)
        await w.send(Subscribe(2, (Subscription("sec/+/own/#", 0),)))
        assert await w.recv() == Suback(2, (0x87,))
    finally:
        await w.__aexit__(None, None, None)
    witness.nothing(m, "sec/+/own/#")


async def test_agent_control(gw: GatewayThread, witness: Witness) -> None:
    """The control: a usable agent_id opens exactly its own topics."""
    m = marker()
    w = await connect_with(gw, "agent-user", agent_id="a1")
    try:
        await w.send(Publish("sec/agents/a1/x", m, 1, packet_id=1))
        assert await w.recv() == Puback(1)
    finally:
        await w.__aexit__(None, None, None)
    assert witness.delivered(m) == ["sec/agents/a1/x"]
