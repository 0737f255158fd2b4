"""TTLs by topic and the Message Expiry Interval of MQTT 5 retained publishes."""

from __future__ import annotations

import pytest

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.properties import Properties
from gateway.protection.config import RetainConfig
from gateway.protection.retention import RetentionPolicy, shortest

EXPIRY = PropertyId.MESSAGE_EXPIRY_INTERVAL
POLICY = RetentionPolicy(
    [
        RetainConfig(("sensors/#",), 3600),
        RetainConfig(("sensors/+/fast",), 10),
        RetainConfig(("orgs/+/records/#",), 86400),
    ]
)


@pytest.mark.parametrize(
    ("topic", "ttl"),
    [
        ("sensors/a", 3600),
        ("sensors/a/fast", 10),  # the shortest of the matching entries
        ("orgs/acme/records/1", 86400),
        ("other/topic", None),
        ("$SYS/sensors", None),
        ("not/a/+/name", None),
    ],
)
def test_ttl_for(topic: str, ttl: int | None) -> None:
    assert POLICY.ttl_for(topic) == ttl
    assert POLICY.ttl_for(topic) == ttl  # cached answer is the same


def test_rule_ttl_merges_shortest() -> None:
    assert POLICY.ttl_for("sensors/a", rule_ttl=60) == 60
    assert POLICY.ttl_for("sensors/a", rule_ttl=99999) == 3600
    assert POLICY.ttl_for("other", rule_ttl=5) == 5
    assert shortest(None, None) is None


def test_no_entries() -> None:
    empty = RetentionPolicy([])
    assert not empty
    assert empty.ttl_for("a") is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, 10),  # set when absent
        (0, 10),  # 0 reads as "never" to Mosquitto: lowered
        (5, 5),  # already shorter: kept
        (10, 10),
        (99, 10),  # lowered
    ],
)
def test_expiry_for_v5_retained(given: int | None, expected: int) -> None:
    props = Properties([(PropertyId.USER_PROPERTY, ("k", "v"))])
    if given is not None:
        props = props.with_(EXPIRY, given)
    out = POLICY.expiry_for_publish("sensors/x/fast", True, props, 5)
    assert out.get(EXPIRY) == expected
    assert out.get_all(PropertyId.USER_PROPERTY) == (("k", "v"),)


def test_expiry_untouched_when_not_applicable() -> None:
    props = Properties([(EXPIRY, 999)])
    assert POLICY.expiry_for_publish("sensors/a", False, props, 5) is props  # not retained
    assert POLICY.expiry_for_publish("sensors/a", True, props, 4) is props  # v3.1.1
    assert POLICY.expiry_for_publish("other", True, props, 5) is props  # no TTL
    out = POLICY.expiry_for_publish("other", True, Properties.EMPTY, 5, rule_ttl=7)
    assert out.get(EXPIRY) == 7
