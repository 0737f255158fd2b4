"""The leader's copy of another worker's live decisions (server/fleet_admin.py), fed the
bytes a peer's /admin/decisions/stream sends, through aiohttp's own stream reader."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from gateway.server.admin_pages import sse_event
from gateway.server.decision_stream import Viewer
from gateway.server.fleet_admin import copy_peer_events


async def _copy(viewer: Viewer, *events: tuple[str, object]) -> asyncio.Event:
    loop = asyncio.get_running_loop()
    content = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    body = b"".join(sse_event(name, data) for name, data in events)
    # Split mid-line, as a socket may deliver it.
    content.feed_data(body[:37])
    content.feed_data(body[37:])
    content.feed_eof()
    joined = asyncio.Event()
    await copy_peer_events(content, 3, viewer, joined)
    return joined


async def test_decisions_are_marked_with_the_worker_and_drops_add_up() -> None:
    viewer = Viewer()
    joined = await _copy(
        viewer,
        ("hello", {"filter": {}, "workers": 1}),
        ("decision", {"kind": "publish", "verdict": "deny", "client_id": "c1"}),
        ("status", {"dropped": 5}),
        ("decision", {"kind": "subscribe", "verdict": "allow", "client_id": "c2"}),
    )
    assert joined.is_set() and list(viewer.peers_dropped) == [3]
    assert [(e["client_id"], e["worker"]) for e in viewer.entries] == [("c1", 3), ("c2", 3)]
    viewer.dropped = 1
    assert viewer.dropped_everywhere == 6
    # The peer's stream ended and was opened again: its count starts from 0 there, and
    # what the first stream dropped is not forgotten.
    await _copy(viewer, ("hello", {}), ("status", {"dropped": 2}))
    assert viewer.peers_dropped == {3: 7}
    assert viewer.dropped_everywhere == 8


async def test_a_peer_that_never_says_hello_does_not_join() -> None:
    viewer = Viewer()
    joined = await _copy(viewer, ("status", {"dropped": 0}))
    assert not joined.is_set() and not viewer.entries
    assert viewer.peers_dropped == {}  # not counted among the workers the leader joined
