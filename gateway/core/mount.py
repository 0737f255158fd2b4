"""Tenant mount points (issue 6, item 1): every topic of an org lives under its prefix.

A client of org ``acme`` with mount ``org/{org}/`` publishes ``a/b``; the broker sees
``org/acme/a/b``; deliveries come back with the prefix stripped. A tenant therefore
cannot name another tenant's topics, not even with ``#``, and sees its own unprefixed.
The org value is a usable binding (no ``/``, ``+``, ``#``, NUL, no leading ``$``), so the
prefix is always exactly the levels the template gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.subscriptions import share_group_of

SHARE_PREFIX = "$share/"


@dataclass(frozen=True, slots=True)
class TopicMount:
    prefix: str  # e.g. "org/acme/", always ending in "/"

    def topic_up(self, topic: str) -> str:
        return self.prefix + topic

    def filter_up(self, topic_filter: str) -> str:
        """``$share/{group}/{filter}`` keeps its group; the inner filter is mounted."""
        group = share_group_of(topic_filter)
        if group is not None:
            inner = topic_filter[len(SHARE_PREFIX) + len(group) + 1 :]
            return f"{SHARE_PREFIX}{group}/{self.prefix}{inner}"
        return self.prefix + topic_filter

    def topic_down(self, topic: str) -> str | None:
        """The client's view of a broker topic; None when it is not under the mount."""
        if topic.startswith(self.prefix):
            return topic[len(self.prefix) :]
        return None


def render_mount(template: str, org: str) -> TopicMount:
    prefix = template.replace("{org}", org)
    if not prefix.endswith("/"):
        prefix += "/"
    return TopicMount(prefix)
