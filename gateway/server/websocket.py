"""The WebSocket upgrade: the checks made before a client's first MQTT byte is read.

MQTT over WebSocket is MQTT 5 spec section 6: binary frames, subprotocol ``mqtt``
(``mqttv3.1`` for old clients). Refusals happen before the upgrade, as plain HTTP.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from gateway.logs import log
from gateway.server.appkeys import GATEWAY_KEY
from gateway.server.authn import TransportInfo
from gateway.server.closed_websocket import drop_close_traceback
from gateway.server.connection import ClientConnection

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.websocket")

# MQTT 5 spec 6.0: "mqtt"; MQTT 3.1 clients (and old libraries) offer "mqttv3.1".
SUBPROTOCOLS = ("mqtt", "mqttv3.1")

# A WebSocket header is at most 14 bytes (RFC 6455 section 5.2); the message limit is
# the MQTT packet limit plus that, so one maximal packet always fits in one message.
WS_FRAMING_OVERHEAD = 14


def offered_subprotocols(request: web.Request) -> list[str]:
    offered: list[str] = []
    for value in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()):
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; clients without one are not browsers and are allowed.

    Matching is exact on scheme://host[:port]: no suffix or prefix match, so
    ``https://app.example.com.evil.net`` is not ``https://app.example.com``.
    """
    if origin is None:
        return True
    return origin in allowed


def bearer_token(request: web.Request) -> str | None:
    value = request.headers.get(hdrs.AUTHORIZATION)
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _refuse(status: int, reason: str, remote: str | None) -> web.Response:
    # No request detail (path, query, headers) is echoed: tokens travel there.
    log(
        logger,
        logging.WARNING,
        "upgrade refused",
        status=status,
        reason=reason,
        client_address=remote,
    )
    return web.Response(status=status, text=reason + "\n")


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    gateway: Gateway = request.app[GATEWAY_KEY]
    conn = await _upgrade(request, gateway)
    if not isinstance(conn, ClientConnection):
        return conn  # refused, as plain HTTP
    ws = conn.ws
    remote = request.remote
    gateway.connections.add(conn)
    gateway.per_address[remote or ""] += 1
    try:
        await conn.run()
    finally:
        gateway.connections.discard(conn)
        gateway.per_address[remote or ""] -= 1
        if gateway.per_address[remote or ""] <= 0:
            del gateway.per_address[remote or ""]
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        # The connection is over: its objects go now, not at the next full GC.
        drop_close_traceback(ws)
    return ws


async def _upgrade(request: web.Request, gateway: Gateway) -> ClientConnection | web.Response:
    """The checks and the upgrade. A function of its own so that what it reads (tokens,
    a copy of the headers) is not held by the handler's frame for the connection's life."""
    cfg = gateway.config
    remote = request.remote
    if not gateway.accepting:
        return _refuse(503, "server shutting down", remote)
    if cfg.audit.on_log_failure == "fail_closed" and gateway.audit_pipeline.log_failing:
        # Unaudited traffic is not allowed here: no new connection until the log writes.
        return _refuse(503, "audit log unavailable", remote)
    if len(gateway.connections) >= cfg.limits.max_connections:
        return _refuse(503, "too many connections", remote)
    if gateway.per_address[remote or ""] >= cfg.limits.max_connections_per_address:
        return _refuse(503, "too many connections from this address", remote)
    if not origin_allowed(request.headers.get(hdrs.ORIGIN), cfg.listener.allowed_origins):
        return _refuse(403, "origin not allowed", remote)
    offered = offered_subprotocols(request)
    if not any(p in SUBPROTOCOLS for p in offered):
        return _refuse(400, "the mqtt subprotocol is required", remote)
    header_token = bearer_token(request)
    query_token = request.query.get("access_token")
    # Cookies are never read: they are what cross-site WebSocket hijacking rides on.
    if header_token is not None or query_token is not None:
        refusal = await gateway.authenticator.check_upgrade(header_token, query_token, remote)
        if refusal is not None:
            status, reason = refusal
            gateway.upgrade_refused(reason, remote)
            return _refuse(status, reason, remote)
    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        compress=False,  # permessage-deflate off: CRIME/BREACH-style leaks, CPU per message
        max_msg_size=cfg.limits.max_packet_size + WS_FRAMING_OVERHEAD,
        autoping=True,
    )
    if not ws.can_prepare(request).ok:
        return _refuse(400, "not a websocket upgrade", remote)
    tls = None
    ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_obj is not None:
        tls = ssl_obj.version()
    transport = TransportInfo(
        remote_address=remote or "",
        headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        header_token=header_token,
        query_token=query_token,
        tls_version=tls,
    )
    await ws.prepare(request)
    return ClientConnection(gateway, ws, transport, gateway.audit)
