"""The asyncio shell around one ``Session``: a WebSocket on one side, the broker on the other.

All protocol decisions are the session's; this module only moves bytes, awaits the
authenticator and the broker connection, and keeps both directions bounded: frames for
the client are written at once only while its socket has less than ``write_buffer_high``
bytes queued (otherwise reading the broker pauses and ``ws.send_bytes`` waits for the
socket to drain), and writes upstream wait for the broker's socket once more than
``write_buffer_high`` bytes are queued, so the fast side stops being read while the slow
side is behind.

Per message, the cost is in wake-ups and calls, not bytes (issue 7): the WebSocket frames
of one read go to the session together, the broker's bytes reach it from
``data_received`` with no reader task, and the writes of one loop turn go out together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMsgType, web

from gateway.acl import Policy
from gateway.audit import CLIENT_TO_UPSTREAM, UPSTREAM_TO_CLIENT
from gateway.audit.records import decider_fragment
from gateway.core.outputs import (
    AuditEvent,
    Authenticate,
    Close,
    OpenUpstream,
    Reauthenticate,
    RetainedCleared,
    RetainedStored,
    Step,
)
from gateway.core.session import Session, SessionSettings, SessionState
from gateway.identity import identity_user_id
from gateway.logs import log
from gateway.server.authn import TransportInfo
from gateway.server.tenancy import TenantRefused

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.connection")

# A frame up to this size goes to the TLS transport with its header in one write (one
# TLS record); a larger one in two, rather than copying it once more.
FRAME_COPY_MAX = 16 * 1024

# How long a client has to answer the gateway's WebSocket close frame (RFC 6455 section
# 7.1.1) before its socket is dropped: long enough for a slow mobile link, short enough
# that shutdown stays within its grace.
CLOSE_HANDSHAKE_S = 2.0

# RFC 6455 section 7.4.1: 1003, "received a type of data it cannot accept".
WS_UNSUPPORTED_DATA = 1003


def _message_queue(ws: web.WebSocketResponse) -> Any:
    """aiohttp's WebSocketDataQueue (``_buffer``: a deque of (message, size); the reader
    feeds it with every frame one read of the socket parsed), or None if this aiohttp
    has none such: then messages are taken one by one, as ``async for`` gives them."""
    queue = getattr(ws, "_reader", None)
    if hasattr(queue, "_buffer") and hasattr(queue, "read"):
        return queue
    return None


async def _take_binary(queue: Any, first: bytes) -> bytes:
    """``first`` and the binary messages already parsed behind it, as one byte string.

    MQTT over WebSocket is one byte stream whatever the framing (MQTT 5 spec 6.0), so
    frames that arrived together are read as one: one session call, one step, one
    upstream write, instead of one wake-up of ``async for`` each (issue 7, item 2).
    Anything else (close, ping, text) stays queued for aiohttp's ``receive``.
    """
    pending = queue._buffer
    parts = [first]
    while pending and pending[0][0].type is WSMsgType.BINARY:
        # Returns at once (a message is queued) and keeps aiohttp's flow control right.
        parts.append((await queue.read()).data)
    return first if len(parts) == 1 else b"".join(parts)


class ClosedFlag:
    """``asyncio.Event`` without the waiters: nothing awaits the connection's end, and an
    Event's empty waiter deque alone is 760 bytes per connection (issue 7, memory)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True


class UpstreamProtocol(asyncio.Protocol):
    """The broker connection. Bytes from the broker go straight to the connection's
    session from ``data_received``: no stream buffer, no reader task, no wake-up per read
    (issue 7). Writes wait in ``drain`` while the transport has paused writing."""

    def __init__(self, conn: ClientConnection) -> None:
        # Dropped in connection_lost: the connection holds this protocol too, and a cycle
        # would keep every closed connection until a full collection.
        self._conn: ClientConnection | None = conn
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, asyncio's or uvloop's (which does not subclass asyncio's).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn._upstream_data(data)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._upstream_lost()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Until the transport's buffer is below its low-water mark, or the connection is lost."""
        if not self._paused or self.lost:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)


def _ws_binary_frame_header(n: int) -> bytes:
    """RFC 6455 section 5.2: FIN + binary opcode, unmasked (server to client), length."""
    if n < 126:
        return bytes((0x82, n))
    if n < 1 << 16:
        return bytes((0x82, 126)) + n.to_bytes(2, "big")
    return bytes((0x82, 127)) + n.to_bytes(8, "big")


class ClientConnection:
    """Relays one client: created per WebSocket, ends when either side closes."""

    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        transport: TransportInfo,
        on_audit: Callable[[ClientConnection, AuditEvent], None],
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.transport = transport
        cfg = gateway.config
        self.session = Session(
            SessionSettings(
                max_packet_size=cfg.limits.max_packet_size,
                connect_timeout_s=cfg.limits.connect_timeout_s,
                upstream_username=cfg.upstream.username,
                upstream_password=gateway.upstream_password,
                on_publish_deny=cfg.acl.on_publish_deny,
                topic_alias_maximum=cfg.acl.topic_alias_maximum,
                max_topic_length=cfg.limits.max_topic_length,
                max_topic_levels=cfg.limits.max_topic_levels,
                max_subscriptions=cfg.limits.max_subscriptions,
                receive_maximum=cfg.limits.receive_maximum,
                max_keep_alive_s=cfg.limits.max_keep_alive_s,
                max_messages_per_s=cfg.limits.max_messages_per_s,
                max_bytes_per_s=cfg.limits.max_bytes_per_s,
                is_control_topic=gateway.is_control_topic,
            ),
            time.time(),
            gateway.policy,
        )
        self.session.quiet_allows = not gateway.allow_events_wanted()
        self.session.allow_sample_ratio = gateway.allow_sample_ratio()
        if gateway.audit_pipeline.wants_allow_records:
            self.session.allow_ledger = []
        # The end of this connection's audit-log lines for ledger allows, and the
        # identity it was encoded for (a re-authentication may change the user).
        self._decider: bytes | None = None
        self._decider_for: object = None
        self.session.protection = gateway.protection
        self._on_audit = on_audit
        self._up: UpstreamProtocol | None = None
        # Steps from the broker's side that need awaiting (actions, a client that is
        # behind, a broker that is behind) run in order in this task while reading the
        # broker is paused; the common step is applied at once in data_received.
        self._up_task: asyncio.Task[None] | None = None
        self._up_held = 0  # bytes for the client in that task, not yet written
        # Upstream writes of one event-loop turn, coalesced (issue 7, item 2).
        self._up_pending: list[bytes] = []
        self._up_pending_bytes = 0
        self._up_flush_scheduled = False
        self._write_buffer_high = cfg.limits.write_buffer_high
        # Packets and bytes sent upstream, added to the metrics once per loop turn.
        self._up_packets = 0
        self._up_bytes = 0
        self._closed = ClosedFlag()
        self._close: Close | None = None
        # One timer per session, armed for its next deadline (connect timeout, keep-alive,
        # token expiry) and moved only when a deadline comes earlier: no wake-up per message.
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._timer_task: asyncio.Task[None] | None = None
        # The task reading the WebSocket. aiohttp closes a WebSocket cleanly (its close
        # frame, then the client's answer, then the TCP close) only when the close comes
        # from the task that reads it; from any other it drops the socket right after its
        # own frame, and the client's answer meets a reset (close code 1006 at the client).
        self._receiver: asyncio.Task[object] | None = None
        # aiohttp's queue of parsed WebSocket messages, when it is the kind whose pending
        # messages can be taken together (see _run); None otherwise.
        self._ws_queue: Any = _message_queue(ws)
        self._close_in_receiver = False
        self.connected_at = time.time()
        self.id = uuid.uuid4().hex[:16]
        self.org: str | None = None

    # -- main loop ---------------------------------------------------------------

    async def run(self) -> None:
        metrics = self.gateway.audit_pipeline.metrics
        metrics.connection_opened()
        try:
            await self._run()
        finally:
            metrics.connection_closed()

    async def _run(self) -> None:
        self._rearm()
        self._receiver = asyncio.current_task()
        session = self.session
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.BINARY:
                    data = msg.data
                    queue = self._ws_queue
                    if queue is not None and queue._buffer:
                        data = await _take_binary(queue, data)
                    step = session.receive_from_client(data, time.time())
                    if step.actions or step.to_client:
                        await self._apply(step)
                    elif step.to_upstream and self._queue_upstream_chunks(step.to_upstream):
                        # The common case (packets for the broker, nothing else) needs no
                        # coroutine and no timer move: deadlines only move later.
                        await self._drain_upstream()
                elif msg.type is WSMsgType.TEXT:
                    # MQTT over WebSocket (MQTT 5 spec 6.0): binary frames only.
                    await self.ws.close(code=WS_UNSUPPORTED_DATA, message=b"binary frames only")
                    break
                else:
                    break
                if self._closed.is_set():
                    break
                # Not kept while idle: the last frame may be the CONNECT, token and all.
                del msg, data, step
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            receiver = self._receiver
            if self._close_in_receiver and receiver is not None:
                receiver.uncancel()  # our own request (_close_both), not the server's
        finally:
            if not self._closed.is_set():
                await self._apply(self.session.client_closed())
            elif self._close_in_receiver:
                await self._close_client(self._close)
            await self._teardown()

    async def shutdown(self) -> None:
        """Server stop: v5 DISCONNECT 0x8B, then close."""
        await self._apply(self.session.shutdown())

    async def policy_changed(self, policy: Policy) -> int:
        """Apply a new policy; returns how many subscriptions were revoked."""
        step = self.session.policy_changed(policy)
        revoked = sum(1 for a in step.actions if isinstance(a, AuditEvent) and a.kind == "revoke")
        await self._apply(step)
        return revoked

    async def kick(self) -> None:
        """Administrative disconnect (admin API): v5 DISCONNECT 0x98."""
        await self._apply(self.session.kick())

    def buffered(self) -> dict[str, int]:
        """Bytes held for this client: unsent to it, and read from the broker but not yet
        relayed. Both stay bounded while the client is slow (backpressure)."""
        ws_transport = self._client_transport()
        up = self._up.transport if self._up is not None else None
        return {
            "to_client": ws_transport.get_write_buffer_size() if ws_transport else 0,
            "from_upstream": self._up_held + self.session.upstream_buffered,
            "to_upstream": up.get_write_buffer_size() if up is not None else 0,
        }

    def _client_transport(self) -> asyncio.Transport | None:
        req = self.ws._req
        # asyncio's or uvloop's TLS transport (uvloop's does not subclass asyncio's).
        return cast(asyncio.Transport, req.transport) if req is not None else None

    def describe(self) -> dict[str, object]:
        """For ``GET /admin/sessions``: who, from where, holding which subscriptions."""
        s = self.session
        return {
            "id": self.id,
            "client_id": s.client_id,
            "upstream_client_id": s.upstream_client_id,
            "state": s.state.value,
            "protocol_level": s.protocol_level,
            "identity": s.identity.as_dict() if s.identity else None,
            "issuer": s.identity.issuer if s.identity else None,
            "client_address": self.transport.remote_address,
            "org": self.org,
            "connected_at": self.connected_at,
            "buffered": self.buffered(),
            "subscriptions": [
                {"filter": sub.topic_filter, "qos": sub.qos, "rule_id": sub.rule_id}
                for sub in s.subscriptions.active.values()
            ],
        }

    # -- applying a step ---------------------------------------------------------

    def _count(self) -> None:
        """Allowed decisions and packets the session counted, into the metrics."""
        metrics = self.gateway.audit_pipeline.metrics
        session = self.session
        counts = session.allowed_counts
        if counts:
            for kind, n in counts.items():
                metrics.decisions_counted(kind, "allow", n)
            counts.clear()
            ledger = session.allow_ledger
            if ledger:
                session.allow_ledger = []
                self.gateway.audit_pipeline.allows(ledger, self._decider_fragment())
        if self._up_packets or session.coalesced_up:
            metrics.packets(
                CLIENT_TO_UPSTREAM, self._up_packets + session.coalesced_up, self._up_bytes
            )
            self._up_packets = self._up_bytes = session.coalesced_up = 0
        if session.coalesced_down:
            metrics.packets(UPSTREAM_TO_CLIENT, session.coalesced_down, 0)
            session.coalesced_down = 0

    def _decider_fragment(self) -> bytes:
        identity = self.session.identity
        if self._decider is None or self._decider_for is not identity:
            self._decider_for = identity
            self._decider = decider_fragment(
                self.session.client_id,
                identity_user_id(identity),
                self.transport.remote_address,
                self.id,
            )
        return self._decider

    async def _apply(self, step: Step) -> None:
        self._count()
        up = step.to_upstream
        if up and self._queue_upstream_chunks(up):
            await self._drain_upstream()
        down = step.to_client
        if down:
            await self._write_client(self._client_frame(down))
        for action in step.actions:
            if isinstance(action, AuditEvent):
                self._on_audit(self, action)
            elif isinstance(action, Authenticate):
                await self._authenticate(action)
            elif isinstance(action, OpenUpstream):
                await self._open_upstream()
            elif isinstance(action, Reauthenticate):
                await self._reauthenticate(action)
            elif isinstance(action, RetainedStored):
                sweeper = await self.gateway.sweeper_for_rules()
                sweeper.record(action.topic, action.org, action.ttl_s)
            elif isinstance(action, RetainedCleared):
                if self.gateway.sweeper is not None:
                    self.gateway.sweeper.forget(action.topic)
            elif isinstance(action, Close):
                self._close = action
                self._closed.set()
                await self._close_both(action)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is None or self._closed.is_set():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._armed = None
            return
        if self._armed is not None and self._armed <= deadline:
            return  # fires first; it re-arms for what is due then
        if self._timer is not None:
            self._timer.cancel()
        self._armed = deadline
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, deadline - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = self._armed = None
        if not self._closed.is_set():
            self._timer_task = asyncio.create_task(self._on_deadline())

    async def _on_deadline(self) -> None:
        await self._apply(self.session.handle_timer(time.time()))

    async def _write_client(self, data: bytes) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(data)

    def _queue_upstream_chunks(self, chunks: list[bytes]) -> bool:
        """Coalesced: one write (and one TLS record, upstream) for all that is ready."""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._up_packets += len(chunks)
        self._up_bytes += len(data)
        return self._queue_upstream(data)

    def _queue_upstream(self, data: bytes) -> bool:
        """Queue bytes for the broker; they go out in one write at the end of this turn of
        the event loop, together with whatever else the client's frames produced in it
        (no timer: ``call_soon`` runs before the loop next waits for I/O). Synchronous,
        so the common case costs no coroutine; True when the caller must drain."""
        up = self._up.transport if self._up is not None else None
        if up is None or up.is_closing():
            return False
        self._up_pending.append(data)
        self._up_pending_bytes += len(data)
        if not self._up_flush_scheduled:
            self._up_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_upstream)
        return self._up_pending_bytes + up.get_write_buffer_size() > self._write_buffer_high

    async def _drain_upstream(self) -> None:
        """Backpressure: the broker is slow, so stop reading the client until it catches up."""
        self._flush_upstream()
        if self._up is not None:
            await self._up.drain()

    def _flush_upstream(self) -> None:
        self._up_flush_scheduled = False
        self._count()  # once per loop turn for what the fast path in _run did not count
        pending = self._up_pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._up_pending_bytes = 0
        up = self._up.transport if self._up is not None else None
        if up is not None and not up.is_closing():
            up.write(data)

    async def _authenticate(self, action: Authenticate) -> None:
        outcome = await self.gateway.authenticator.authenticate(
            action.connect, action.client_id, self.transport, action.assigned
        )
        # The upgrade's headers and tokens were for this decision; later only the address
        # and TLS version are read (audit, admin), so a long-lived connection drops the rest.
        self.transport = TransportInfo(
            self.transport.remote_address, tls_version=self.transport.tls_version
        )
        if outcome.ok and outcome.identity is not None and outcome.upstream_client_id is not None:
            tenants = self.gateway.tenants
            if tenants is None:
                step = self.session.auth_succeeded(outcome.identity, outcome.upstream_client_id)
            else:
                try:
                    place = tenants.place(
                        outcome.identity, outcome.upstream_client_id, self.gateway.policy
                    )
                except TenantRefused as exc:
                    # A token without a usable org (or for an org it may not enter) is
                    # refused when tenancy is on: v5 0x87, v3.1.1 0x05.
                    await self._apply(self.session.auth_failed(exc.reason, 0x87, 0x05))
                    return
                self.org = place.org
                step = self.session.auth_succeeded(
                    outcome.identity,
                    place.upstream_client_id,
                    policy=place.policy,
                    mount=place.mount,
                    org=place.org,
                )
            await self._apply(step)
        else:
            await self._apply(
                self.session.auth_failed(outcome.reason, outcome.connack_v5, outcome.connack_v3)
            )

    async def _reauthenticate(self, action: Reauthenticate) -> None:
        identity = self.session.identity
        assert identity is not None
        outcome = await self.gateway.authenticator.reauthenticate(identity, action.token)
        if outcome.ok and outcome.identity is not None:
            # Allows made under the old identity are logged with it, before it changes.
            self._count()
            await self._apply(self.session.reauth_succeeded(outcome.identity))
        else:
            await self._apply(self.session.reauth_failed(outcome.reason))

    async def _open_upstream(self) -> None:
        up = self.gateway.config.upstream
        ctx: ssl.SSLContext | None = self.gateway.upstream_ssl
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamProtocol(self),
                    up.host,
                    up.port,
                    ssl=ctx,
                    server_hostname=up.host if ctx else None,
                ),
                timeout=up.connect_timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log(
                logger,
                logging.WARNING,
                "upstream unreachable",
                error=str(exc) or type(exc).__name__,
            )
            self.gateway.note_upstream(ok=False)
            await self._apply(self.session.upstream_failed(type(exc).__name__))
            return
        self.gateway.note_upstream(ok=True)
        self._up = protocol
        # MQTT packets are small and latency matters more than segment count.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self._write_buffer_high)
        if self._closed.is_set():
            transport.close()  # the client left while the broker answered
            return
        await self._apply(self.session.upstream_connected())

    def _upstream_data(self, data: bytes) -> None:
        """``data_received`` of the broker connection: synchronous for the common step."""
        if self._closed.is_set():
            return
        step = self.session.receive_from_upstream(data)
        if not step.actions and not step.to_upstream and self._up_task is None:
            down = step.to_client
            if not down or self._write_client_now(down):
                self._count()
                return
        self._upstream_later(step, resume=True)

    def _client_frame(self, chunks: list[bytes]) -> bytes:
        """The payload of one WebSocket frame for the client, counted in the metrics:
        several MQTT packets per frame (MQTT 5 spec 6.0), so one frame, one TLS record
        and one wake-up of the client for a whole batch."""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.gateway.audit_pipeline.metrics.packets(UPSTREAM_TO_CLIENT, len(chunks), len(data))
        return data

    def _write_client_now(self, chunks: list[bytes]) -> bool:
        """One WebSocket frame straight to the client's transport, when it is open and
        not behind (else False: the step waits in the upstream task, which awaits
        aiohttp's drain). Several MQTT packets per frame: MQTT 5 spec 6.0."""
        transport = self._client_transport()
        if (
            self.ws.closed
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > self._write_buffer_high
        ):
            return False
        data = self._client_frame(chunks)
        header = _ws_binary_frame_header(len(data))
        if len(data) <= FRAME_COPY_MAX:
            transport.write(header + data)
        else:
            transport.write(header)
            transport.write(data)
        return True

    def _upstream_later(self, step: Step, *, resume: bool) -> None:
        """Apply a broker-side step in the upstream task, after those before it; reading
        the broker stays paused until it is done (backpressure, and order)."""
        up = self._up.transport if self._up is not None else None
        if up is not None and resume and not up.is_closing():
            up.pause_reading()
        held = sum(len(c) for c in step.to_client)
        self._up_held += held
        self._up_task = asyncio.create_task(self._upstream_step(self._up_task, step, held, resume))

    async def _upstream_step(
        self, before: asyncio.Task[None] | None, step: Step, held: int, resume: bool
    ) -> None:
        if before is not None and not before.done():
            await asyncio.wait({before})
        try:
            await self._apply(step)
        finally:
            self._up_held -= held
            if self._up_task is asyncio.current_task():
                self._up_task = None
            up = self._up.transport if self._up is not None else None
            if resume and up is not None and not up.is_closing() and not self._closed.is_set():
                up.resume_reading()

    def _upstream_lost(self) -> None:
        """``connection_lost`` of the broker connection."""
        if not self._closed.is_set():
            self._upstream_later(self.session.upstream_closed(), resume=False)

    # -- closing -----------------------------------------------------------------

    async def _close_both(self, close: Close) -> None:
        self._flush_upstream()  # what the session queued before closing goes first
        up = self._up
        if up is not None and up.transport is not None and not up.transport.is_closing():
            with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(up.drain(), 1.0)
            up.transport.close()
        receiver = self._receiver
        if receiver is not None and receiver is not asyncio.current_task() and not receiver.done():
            # Closed from the broker's side, a timer or the server: the receiving task
            # closes the WebSocket (see __init__). Wait for it, boundedly.
            self._close_in_receiver = True
            receiver.cancel()
            await asyncio.wait({receiver}, timeout=CLOSE_HANDSHAKE_S + 1.0)
            return
        await self._close_client(close)

    async def _close_client(self, close: Close | None) -> None:
        """RFC 6455 section 7.1.2: our close frame, then the client's, then the TCP close."""
        if self.ws.closed:
            return
        code = close.ws_code if close is not None else 1000
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(code=code), CLOSE_HANDSHAKE_S)

    async def _teardown(self) -> None:
        self._count()  # the last ledger allows and counts
        current = asyncio.current_task()
        if self._timer is not None:
            self._timer.cancel()
        for task in (self._up_task, self._timer_task):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        up = self._up.transport if self._up is not None else None
        if up is not None and not up.is_closing():
            up.close()

    @property
    def state(self) -> SessionState:
        return self.session.state
