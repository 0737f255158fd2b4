"""A closed connection is freed by reference counting, not left to the cycle collector:
under steady churn, cycles would pile up whole connections (WebSocket, TLS, session,
upstream) until CPython's next full collection."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tests.conftest import GatewayFactory


async def test_closed_connection_is_freed_without_a_collection(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory()
    assert gw.gateway is not None
    c = gw.client(version=5)
    c.connect()
    c.subscribe("freed/x", 1)
    c.publish("freed/x", b"m", 1)
    c.expect()
    (conn,) = list(gw.gateway.connections)
    ref = weakref.ref(conn)
    up_ref = weakref.ref(conn._up) if conn._up is not None else None
    del conn
    gc.collect()
    gc.disable()
    try:
        c.disconnect()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if ref() is None and (up_ref is None or up_ref() is None):
                break
        assert ref() is None, gc.get_referrers(ref())
        assert up_ref is not None and up_ref() is None
    finally:
        gc.enable()
