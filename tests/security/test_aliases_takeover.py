"""MQTT v5 topic aliases (issue 5, item 3) and session / client-id takeover (issue 3, item 7)."""

from __future__ import annotations

import pytest

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.packets import Connack, Connect, Puback, Publish
from gateway.mqtt.properties import Properties
from tests.security.conftest import Attacker, Witness, closed_with, marker, session, user
from tests.support.gateway_thread import GatewayThread


def alias(n: int) -> Properties:
    return Properties([(PropertyId.TOPIC_ALIAS, n)])


async def test_alias_bound_to_refused_topic_stays_refused(
    gw: GatewayThread, witness: Witness
) -> None:
    m1, m2 = marker(), marker()
    async with session(gw, 5) as w:
        await w.send(Publish(f"sec/{user()}/own/x", m1, 1, packet_id=1, properties=alias(1)))
        assert await w.recv() == Puback(1, 0x87)
        await w.send(Publish("", m2, 1, packet_id=2, properties=alias(1)))
        assert await w.recv() == Puback(2, 0x87)
    witness.nothing(m1, m2)


async def test_alias_rebound_from_allowed_to_refused(gw: GatewayThread, witness: Witness) -> None:
    ok, bad = marker(), marker()
    async with session(gw, 5) as w:
        await w.send(Publish(f"sec/{w.sub}/own/x", ok, 1, packet_id=1, properties=alias(2)))
        assert await w.recv() == Puback(1)
        await w.send(Publish(f"sec/{w.sub}/wide/secret", bad, 1, packet_id=2, properties=alias(2)))
        assert await w.recv() == Puback(2, 0x87)
        await w.send(Publish("", bad, 1, packet_id=3, properties=alias(2)))
        assert await w.recv() == Puback(3, 0x87)
    assert witness.delivered(ok) == [f"sec/{w.sub}/own/x"]
    witness.nothing(bad)
    # The broker never sees an alias: its map stays empty (core/aliases.py).
    assert b"\x23\x00\x02" not in witness.broker_bytes()


async def test_alias_above_maximum(gw: GatewayThread, witness: Witness) -> None:
    m = marker()
    async with session(gw, 5) as w:
        await w.send(Publish(f"sec/{w.sub}/own/x", m, 1, packet_id=1, properties=alias(65)))
        await closed_with(w, 5, 0x94)
    witness.nothing(m)


async def test_unknown_alias(gw: GatewayThread, witness: Witness) -> None:
    m = marker()
    async with session(gw, 5) as w:
        await w.send(Publish("", m, 1, packet_id=1, properties=alias(9)))
        await closed_with(w, 5, 0x82)
    witness.nothing(m)


async def test_alias_zero(gw: GatewayThread, witness: Witness) -> None:
    """MQTT 5 spec 3.3.2.3.4: alias 0 is not permitted; refused before any decision."""
    m = marker()
    async with session(gw, 5) as w:
        topic = f"sec/{w.sub}/own/x".encode()
        body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01\x03\x23\x00\x00" + m
        await w.send_raw(bytes([0x32, len(body)]) + body)
        got = await w.recv()
        assert getattr(got, "reason_code", None) in (0x82, 0x94), got
    witness.nothing(m)


@pytest.mark.parametrize("level", [4, 5])
async def test_same_client_id_two_identities(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    """Mallory reuses Alice's client id: Alice stays connected, the broker sees two ids."""
    alice, mallory = user(), user()
    cid = "shared-" + user()
    async with Attacker(gw, level=level) as a, Attacker(gw, level=level) as m:
        for w, sub in ((a, alice), (m, mallory)):
            got = await w.connect(
                Connect(
                    cid,
                    protocol_level=level,
                    username="u",
                    clean_start=False,
                    password=gw.idp.token(sub).encode(),
                )
            )
            assert isinstance(got, Connack) and got.reason_code == 0
            assert got.session_present is False
        m1 = marker()
        await a.send(Publish(f"sec/{alice}/own/x", m1, 1, packet_id=1))
        assert await a.recv() == Puback(1)  # Alice was not kicked off
    ids = {c[0].client_id for c in witness.relay.packets()[-2:] if c}  # type: ignore[union-attr]
    assert ids == {f"{alice}:{cid}", f"{mallory}:{cid}"}


async def test_separator_injection_cannot_collide(gw: GatewayThread, witness: Witness) -> None:
    """User 'a' with client id 'b:c' and user 'a:b' with client id 'c' must not meet."""
    base = user()
    async with Attacker(gw, level=5) as a, Attacker(gw, level=5) as m:
        for w, sub, cid in ((a, base, "b:c"), (m, base + ":b", "c")):
            got = await w.connect(
                Connect(cid, protocol_level=5, password=gw.idp.token(sub).encode())
            )
            assert isinstance(got, Connack) and got.reason_code == 0
    ids = [c[0].client_id for c in witness.relay.packets()[-2:] if c]  # type: ignore[union-attr]
    assert len(set(ids)) == 2, ids
