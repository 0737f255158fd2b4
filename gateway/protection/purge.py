"""Purge: find the retained messages under a topic filter and clear them (issue 10, item 3).

The broker has no "list retained" request, so the service account subscribes to the
filter and collects what arrives with the retain flag set (MQTT 3.3.1.3: a broker sends
the retained messages on subscribe, flagged). It stops when nothing arrived for
``idle_s`` or after ``max_wait_s``, then publishes an empty retained payload to each.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from gateway.acl.topic import parse_filter
from gateway.identity import is_usable_value
from gateway.protection.broker import BrokerParams

# Mosquitto sends the retained messages right after the SUBACK, back to back; half a
# second of silence means they are all in even on a loaded machine.
DEFAULT_IDLE_S = 0.5
DEFAULT_MAX_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge found (and cleared, unless it was a dry run)."""

    topic_filter: str
    org: str | None
    topics: tuple[str, ...]
    cleared: bool


def scoped_filter(topic_filter: str, org: str | None, mount: str | None) -> str:
    """The broker-side filter: with tenancy, ``mount`` (e.g. ``org/{org}/``) names the
    org's subtree and the filter is relative to it."""
    if mount is None:
        return topic_filter
    if org is None or not is_usable_value(org):
        raise ValueError(f"a tenancy mount needs a usable org, got {org!r}")
    return mount.format(org=org) + topic_filter


async def find_retained(
    broker: BrokerParams,
    topic_filter: str,
    *,
    idle_s: float = DEFAULT_IDLE_S,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
) -> tuple[str, ...]:
    """The topics under ``topic_filter`` that hold a retained message now."""
    parse_filter(topic_filter)  # TopicSyntaxError before connecting
    found: dict[str, None] = {}
    loop = asyncio.get_running_loop()
    async with broker.client() as client:
        await client.subscribe(topic_filter, qos=0)
        deadline = loop.time() + max_wait_s
        messages = aiter(client.messages)
        while (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), min(idle_s, left))
            except TimeoutError:
                break
            if message.retain and message.payload:
                found[message.topic.value] = None
        with contextlib.suppress(Exception):
            await client.unsubscribe(topic_filter)
    return tuple(found)


async def purge(
    broker: BrokerParams,
    topic_filter: str,
    org: str | None = None,
    *,
    mount: str | None = None,
    apply: bool = True,
    idle_s: float = DEFAULT_IDLE_S,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
) -> PurgeResult:
    """Clear every retained message under ``topic_filter`` (relative to the org's mount
    when ``mount`` is given); with ``apply=False`` only report them."""
    scoped = scoped_filter(topic_filter, org, mount)
    topics = await find_retained(broker, scoped, idle_s=idle_s, max_wait_s=max_wait_s)
    if apply and topics:
        async with broker.client() as client:
            for topic in topics:
                await client.publish(topic, b"", qos=1, retain=True)
    return PurgeResult(scoped, org, topics, apply)
