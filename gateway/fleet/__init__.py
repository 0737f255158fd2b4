"""One policy for a fleet of gateways (issue 6, item 4): signed, distributed by the broker."""

from gateway.fleet.control import DEFAULT_CONTROL_TOPIC, control_topic_predicate, is_control_topic

__all__ = ["DEFAULT_CONTROL_TOPIC", "control_topic_predicate", "is_control_topic"]
