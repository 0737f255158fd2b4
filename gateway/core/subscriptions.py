"""The subscriptions a session holds at the broker, as the gateway granted them."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.mqtt.packets import Subscription

# Packet identifiers for the gateway's own UNSUBSCRIBE (revocation) count down from the
# top of the range (MQTT 5 spec 2.2.1): clients allocate from 1 upwards, so the two
# rarely meet; when they do, the broker answers in order and the oldest waiter wins.
OWN_PACKET_ID_TOP = 65535
OWN_PACKET_ID_FLOOR = 60000


@dataclass(frozen=True, slots=True)
class ActiveSubscription:
    topic_filter: str  # as the client wrote it, $share/{group}/ included
    qos: int  # granted by the broker
    rule_id: str | None
    share_group: str | None


@dataclass(slots=True)
class PendingSubscribe:
    """A SUBSCRIBE forwarded with only its allowed filters, awaiting the broker's SUBACK.

    ``codes`` has the gateway's refusal code at refused positions and None where the
    broker's code goes; ``forwarded`` is what the broker was asked for, in order.
    """

    codes: list[int | None]
    forwarded: list[Subscription]
    rule_ids: list[str | None]


@dataclass(slots=True)
class SubscriptionBook:
    active: dict[str, ActiveSubscription] = field(default_factory=dict)
    pending: dict[int, PendingSubscribe] = field(default_factory=dict)
    own_unsubscribes: list[int] = field(default_factory=list)
    _next_own_id: int = OWN_PACKET_ID_TOP

    def share_groups(self) -> set[str]:
        return {s.share_group for s in self.active.values() if s.share_group is not None}

    def own_packet_id(self) -> int:
        pid = self._next_own_id
        self._next_own_id = pid - 1 if pid > OWN_PACKET_ID_FLOOR else OWN_PACKET_ID_TOP
        self.own_unsubscribes.append(pid)
        return pid

    def take_own_unsuback(self, packet_id: int) -> bool:
        """Whether an UNSUBACK answers the gateway's own UNSUBSCRIBE (then it is not forwarded)."""
        if packet_id in self.own_unsubscribes:
            self.own_unsubscribes.remove(packet_id)
            return True
        return False


def share_group_of(topic_filter: str) -> str | None:
    """``$share/{group}/{filter}`` (MQTT 5 spec 4.8.2) -> group, else None."""
    if not topic_filter.startswith("$share/"):
        return None
    group, _, _ = topic_filter[len("$share/") :].partition("/")
    return group
