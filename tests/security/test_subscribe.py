"""Subscribe containment and overlap, $share groups, retained-message leakage across
identities: a refused filter is never forwarded, a SUBACK keeps the client's order."""

from __future__ import annotations

import asyncio

import pytest

from gateway.mqtt.packets import Publish, Suback, Subscribe, Subscription
from tests.security.conftest import Witness, marker, session, user
from tests.support.gateway_thread import GatewayThread
from tests.support.mosquitto import Mosquitto
from tests.support.spy import BrokerSpy

LEVELS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


def refused(level: int) -> int:
    return 0x87 if level == 5 else 0x80


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "flt",
    [
        "sec/{u}/plus/#",  # '+' allowed, '#' is wider
        "sec/{u}/plus/x/y",  # deeper than '+'
        "sec/{u}/#",  # wider than every own rule
        "sec/+/own/#",  # every user's topics
        "sec/#",
        "#",
        "+/+/+",
        "sec/{u}/wide/#",  # overlaps the deny on wide/secret
        "sec/{u}/wide/+",
        "sec/feed/#",  # wider than feed/+
    ],
)
async def test_wider_or_overlapping_filter_refused(
    gw: GatewayThread, witness: Witness, level: int, flt: str
) -> None:
    async with session(gw, level) as w:
        f = flt.replace("{u}", w.sub)
        await w.send(Subscribe(1, (Subscription(f, 0),)))
        assert await w.recv() == Suback(1, (refused(level),))
    witness.nothing(f.encode())


@pytest.mark.parametrize("level", LEVELS)
async def test_mixed_filters_only_allowed_forwarded(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    async with session(gw, level) as w:
        ok1, bad, ok2 = f"sec/{w.sub}/own/a", f"sec/{user()}/own/#", f"sec/{w.sub}/plus/x"
        await w.send(
            Subscribe(7, (Subscription(ok1, 1), Subscription(bad, 1), Subscription(ok2, 2)))
        )
        got = await w.recv()
    # Granted QoS: own allows 2 (1 asked), plus has no qos list: the broker grants as asked.
    assert got == Suback(7, (1, refused(level), 2))
    data = witness.broker_bytes()
    assert ok1.encode() in data and ok2.encode() in data
    witness.nothing(bad)


@pytest.mark.parametrize("level", LEVELS)
async def test_delivery_check_on_allowed_wildcard(
    gw: GatewayThread, broker: Mosquitto, witness: Witness, level: int
) -> None:
    """A '+' subscription gets only what the delivery check admits (defence in depth)."""
    async with session(gw, level) as w:
        await w.send(Subscribe(1, (Subscription(f"sec/{w.sub}/plus/+", 0),)))
        assert await w.recv() == Suback(1, (0,))
        ok = marker()
        witness.spy.publish(f"sec/{w.sub}/plus/a", ok, qos=0)
        got = await w.recv()
        assert isinstance(got, Publish) and got.payload == ok


@pytest.mark.parametrize(
    ("flt", "allowed"),
    [
        ("$share/workers/sec/jobs/#", True),
        ("$share/workers/sec/jobs/a", True),
        ("$share/other/sec/jobs/#", False),  # the rule admits only the group "workers"
        ("sec/jobs/#", False),  # not shared: the rule needs the group
        ("$share/workers/sec/#", False),
        ("$share/workers/#", False),
        ("$share/workers/sec/{other}/own/#", False),
    ],
)
async def test_share_groups(gw: GatewayThread, witness: Witness, flt: str, allowed: bool) -> None:
    async with session(gw, 5) as w:
        f = flt.replace("{other}", user())
        await w.send(Subscribe(1, (Subscription(f, 0),)))
        got = await w.recv()
    if allowed:
        assert got == Suback(1, (0,))
        assert f.encode() in witness.broker_bytes()
    else:
        assert got == Suback(1, (0x87,))
        witness.nothing(f)


async def test_share_group_with_wildcard_is_malformed(gw: GatewayThread, witness: Witness) -> None:
    """MQTT 5 spec 4.8.2: a ShareName has no '+', '#' or '/': Malformed."""
    async with session(gw, 5) as w:
        await w.send_raw(b"\x82\x11\x00\x01\x00\x00\x0b$share/+/sx\x00")
        got = await w.recv()
        assert getattr(got, "reason_code", None) in (0x81, 0x8F), got
    witness.nothing(b"$share/+")


@pytest.mark.parametrize("level", LEVELS)
async def test_retained_message_does_not_leak_to_another_identity(
    gw: GatewayThread, witness: Witness, level: int
) -> None:
    alice = user()
    secret = marker()
    async with session(gw, level, sub=alice) as a:
        await a.send(Publish(f"sec/{alice}/own/state", secret, 1, retain=True, packet_id=1))
        await a.recv()
    assert witness.delivered(secret) == [f"sec/{alice}/own/state"]  # it is retained
    async with session(gw, level) as mallory:
        await mallory.send(
            Subscribe(
                1,
                (
                    Subscription(f"sec/{alice}/own/state", 1),
                    Subscription(f"sec/{alice}/own/#", 1),
                    Subscription("sec/+/own/state", 1),
                    Subscription(f"sec/{mallory.sub}/own/#", 1),
                ),
            )
        )
        r = refused(level)
        assert await mallory.recv() == Suback(1, (r, r, r, 1))
        with pytest.raises(TimeoutError):
            await mallory.recv(0.5)
    # Clear the retained message.
    witness.spy.publish(f"sec/{alice}/own/state", b"", qos=1, retain=True)


async def test_retained_in_a_shared_feed_is_delivered_is_the_control(
    gw: GatewayThread, broker: Mosquitto
) -> None:
    m = marker()
    topic = f"sec/feed/{user()}"
    with BrokerSpy(broker.port, topic) as spy:
        spy.publish(topic, m, qos=1, retain=True)
        async with session(gw, 5) as w:
            await w.send(Subscribe(1, (Subscription(topic, 1),)))
            assert await w.recv() == Suback(1, (1,))
            got = await w.recv()
            assert isinstance(got, Publish) and got.payload == m and got.retain
        spy.publish(topic, b"", qos=1, retain=True)
        await asyncio.sleep(0)
