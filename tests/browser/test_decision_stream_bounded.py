"""A decision viewer that never reads never slows the data path (issue 8, item 3): its
queue is bounded and drops the oldest entries, counted; an SSE client that stops reading
holds a stalled stream, not the gateway."""

from __future__ import annotations

import queue
import socket
import time
import uuid

import aiohttp

from gateway.server.decision_stream import VIEWER_QUEUE, Viewer
from tests.browser.conftest import ADMIN_TOKEN, AdminGateway

POLICY = {
    "version": "2.0",
    "default_action": "deny",
    "rules": [{"id": "own", "topic": "slow/{user_id}/#", "action": "all", "effect": "allow"}],
}
# Each message is two decisions (publish and delivery): 3,000 messages overrun a viewer's
# 2,000 entries three times over, in about a second.
MESSAGES = 3000


def stalled_sse_client(port: int) -> socket.socket:
    """Asks for the stream with a tiny receive buffer and never reads a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /admin/decisions/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
    )
    return sock


async def _healthz(port: int) -> float:
    start = time.monotonic()
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{port}/healthz") as r,
    ):
        assert r.status == 200
    return time.monotonic() - start


def test_a_viewer_that_never_reads_never_slows_the_gateway(admin_gateway: AdminGateway) -> None:
    gw = admin_gateway(POLICY)
    assert gw.gateway is not None
    stream = gw.gateway.decision_stream

    async def open_viewer() -> Viewer | None:
        return stream.open()

    async def viewers() -> list[tuple[int, int]]:
        return [(len(v.entries), v.dropped) for v in stream.viewers]

    never_reads = gw.call(open_viewer())
    assert never_reads is not None
    sse = stalled_sse_client(gw.admin_port)
    deadline = time.monotonic() + 5
    while len(gw.call(viewers())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(gw.call(viewers())) == 2  # the stalled stream holds a viewer too

    u = "s" + uuid.uuid4().hex[:8]
    sub = gw.client(sub=u, client_id=f"{u}-sub")
    sub.connect()
    sub.subscribe(f"slow/{u}/#", 0)
    pub = gw.client(sub=u, client_id=f"{u}-pub")
    pub.connect()
    start = time.monotonic()
    for i in range(MESSAGES):
        pub.c.publish(f"slow/{u}/m", str(i).encode(), 0)
    got = 0
    try:
        while got < MESSAGES:
            sub.messages.get(timeout=10)
            got += 1
    except queue.Empty:
        pass
    elapsed = time.monotonic() - start
    assert got == MESSAGES, f"{got} of {MESSAGES} delivered in {elapsed:.1f} s"

    async def state() -> tuple[int, int]:
        return len(never_reads.entries), never_reads.dropped

    entries, dropped = gw.call(state())
    assert entries == VIEWER_QUEUE
    assert dropped >= 2 * MESSAGES - VIEWER_QUEUE, dropped
    # The admin listener still answers promptly next to the stalled stream.
    assert gw.call(_healthz(gw.admin_port)) < 1.0
    pub.disconnect()
    sub.disconnect()
    sse.close()

    async def close() -> None:
        stream.close(never_reads)

    gw.call(close())
