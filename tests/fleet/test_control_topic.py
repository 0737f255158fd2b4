"""Clients can never name the control topic: topics, filters, wildcards, shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.fleet.control import filter_matches, is_control_topic


@pytest.mark.parametrize(
    "name",
    [
        "$mqttgate/policy",
        "$mqttgate/policy/x",
        "$mqttgate/other",
        "$mqttgate",
        "$mqttgate/#",
        "$mqttgate/+",
        "$share/g/$mqttgate/policy",
        "$share/g/$mqttgate/#",
    ],
)
def test_default_control_topic_and_namespace_refused(name: str) -> None:
    assert is_control_topic(name)


@pytest.mark.parametrize(
    "name", ["#", "+/policy", "a/b", "mqttgate/policy", "$SYS/#", "$share/g/#"]
)
def test_ordinary_topics_pass_with_a_dollar_control_topic(name: str) -> None:
    # MQTT 5.0 §4.7.2: "#" and "+/..." never match a "$" topic, so they cannot reach it.
    assert not is_control_topic(name)


@pytest.mark.parametrize(
    ("name", "hit"),
    [
        ("ctl/policy", True),
        ("ctl/policy/x", True),
        ("#", True),
        ("ctl/#", True),
        ("+/policy", True),
        ("+/+", True),
        ("$share/g/+/policy", True),
        ("ctl/other", False),
        ("+/other", False),
        ("+", False),
        ("ctl", False),
    ],
)
def test_plain_control_topic_blocks_matching_wildcards(name: str, hit: bool) -> None:
    assert is_control_topic(name, "ctl/policy") is hit


LEVEL = st.sampled_from(["a", "b", "ctl", "policy", "+", "#", "$x"])


@given(st.lists(LEVEL, min_size=1, max_size=4))
def test_any_filter_that_matches_is_refused(levels: list[str]) -> None:
    if "#" in levels[:-1]:
        return  # not a valid filter (MQTT 5.0 §4.7.1.2)
    f = "/".join(levels)
    if filter_matches(f, "ctl/policy"):
        assert is_control_topic(f, "ctl/policy")
