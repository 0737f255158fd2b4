"""The benchmark's load generator: MQTT 3.1.1 over WebSocket (Secure), asyncio, no broker library.

A worker process holds either publishers or subscribers for one scenario at a time and
is driven by ``bench/relay.py`` over a ``multiprocessing`` pipe, so that processes are
started once per benchmark, not once per scenario.

Wire format is written by hand (MQTT 3.1.1, sections 3.1, 3.3, 3.4, 3.8): the client
side must cost less than what it measures, and a general codec would spend its time on
packets a benchmark never sends. Every PUBLISH is its own WebSocket frame, as paho and
browser clients send them. A subscriber's PUBACKs for the PUBLISHes that arrived in one
frame go back in one frame (MQTT 5 spec 6.0 allows several packets per frame).

Payload (64 bytes): pair index, sequence number and ``time.monotonic_ns()`` at send.
CLOCK_MONOTONIC is one clock for every process on the machine, so the subscriber
computes publish-to-delivery latency directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

PAYLOAD_HEADER = struct.Struct(">IIq")  # pair, sequence, monotonic ns at send
DEFAULT_PAYLOAD_SIZE = 64
# QoS 1 publishers keep this many PUBLISHes unacknowledged: enough to keep a pipe
# through a relay full, small enough that the broker's inbound queue stays short.
DEFAULT_INFLIGHT = 64
KEEPALIVE_S = 60


# -- MQTT 3.1.1 encoding (sections 2.2.3, 3.1, 3.3, 3.4, 3.8) ------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id: str, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if password is not None:
        flags |= 0xC0  # username + password (3.1.2.8, 3.1.2.9)
        payload += _utf8("bench") + _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", KEEPALIVE_S) + payload
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(packet_id: int, topic: str, qos: int) -> bytes:
    body = struct.pack(">H", packet_id) + _utf8(topic) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


def publish_prefix(topic: str, qos: int, payload_size: int) -> tuple[bytes, bytes]:
    """The bytes before the packet id (QoS 1) and the packet id's absence (QoS 0)."""
    topic_b = _utf8(topic)
    remaining = len(topic_b) + (2 if qos else 0) + payload_size
    return bytes([0x30 | (qos << 1)]) + _varint(remaining) + topic_b, b""


DISCONNECT = b"\xe0\x00"


@dataclass
class StreamParser:
    """Splits a byte stream into (first byte, body) pairs; packets may span frames."""

    rest: bytes = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.rest:
            data, self.rest = self.rest + data, b""
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(data)
        while end - pos >= 2:
            first = data[pos]
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end and i < pos + 5:  # at most 4 length bytes (2.2.3)
                b = data[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break
            out.append((first, data[i : i + length]))
            pos = i + length
        if pos < end:
            self.rest = data[pos:]
        return out


# -- connections ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where clients connect: a ws(s) URL, the CA to trust, and whether to send a token."""

    url: str
    cafile: str | None = None
    tokens: tuple[str, ...] = ()  # one per client index; empty: no password


def client_ssl(target: Target) -> ssl.SSLContext | None:
    if not target.url.startswith("wss:"):
        return None
    ctx = ssl.create_default_context(cafile=target.cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


async def open_mqtt(
    session: aiohttp.ClientSession, target: Target, client_id: str, token: str | None
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        target.url,
        protocols=("mqtt",),
        ssl=client_ssl(target) or False,
        autoping=True,
        compress=0,
        max_msg_size=0,
        heartbeat=None,
    )
    await ws.send_bytes(connect_packet(client_id, token))
    parser = StreamParser()
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"{client_id}: no CONNACK ({msg.type.name} {msg.data!r})")
        for first, body in parser.feed(msg.data):
            if first >> 4 == 2:
                if body[1] != 0:
                    raise ConnectionError(f"{client_id}: CONNACK return code {body[1]}")
                return ws
    raise AssertionError("unreachable")


# -- publishers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishSpec:
    target: Target
    run: str
    pairs: tuple[int, ...]  # pair indices this worker publishes for
    qos: int
    messages: int  # per pair
    seconds: float  # cap per pair
    rate: float  # per pair, msgs/s; 0: as fast as possible
    payload_size: int = DEFAULT_PAYLOAD_SIZE
    inflight: int = DEFAULT_INFLIGHT


def topic_for(run: str, pair: int) -> str:
    return f"bench/{run}/{pair}"


async def _publisher(
    ws: aiohttp.ClientWebSocketResponse, spec: PublishSpec, pair: int, start_at: float
) -> dict[str, Any]:
    prefix, _ = publish_prefix(topic_for(spec.run, pair), spec.qos, spec.payload_size)
    pad = bytes(spec.payload_size - PAYLOAD_HEADER.size)
    pack = PAYLOAD_HEADER.pack
    now = time.monotonic_ns
    send = ws.send_bytes
    acked = 0
    window = asyncio.Event()
    window.set()
    sent = 0

    async def read_acks() -> None:
        nonlocal acked
        parser = StreamParser()
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.BINARY:
                return
            for first, _body in parser.feed(msg.data):
                if first >> 4 == 4:
                    acked += 1
            if sent - acked < spec.inflight:
                window.set()

    reader = asyncio.create_task(read_acks()) if spec.qos else None
    while time.monotonic() < start_at:
        await asyncio.sleep(start_at - time.monotonic())
    t0 = now()
    deadline = t0 + int(spec.seconds * 1e9)
    interval = int(1e9 / spec.rate) if spec.rate > 0 else 0
    next_at = t0
    qos = spec.qos
    for seq in range(spec.messages):
        if interval:
            t = now()
            if t < next_at:
                await asyncio.sleep((next_at - t) / 1e9)
            next_at += interval
        if qos:
            if sent - acked >= spec.inflight:
                window.clear()
                await window.wait()
            pid = seq % 65535 + 1
            await send(prefix + struct.pack(">H", pid) + pack(pair, seq, now()) + pad)
        else:
            await send(prefix + pack(pair, seq, now()) + pad)
        sent += 1
        if seq & 0xFF == 0 and now() > deadline:
            break
    t_end = now()
    if reader is not None:
        # Wait (bounded) for the last PUBACKs so the broker has taken every message.
        ack_deadline = time.monotonic() + 10
        while acked < sent and time.monotonic() < ack_deadline:
            window.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(window.wait(), 0.2)
        reader.cancel()
    return {"pair": pair, "sent": sent, "acked": acked, "t0": t0, "t_end": t_end}


async def run_publishers(spec: PublishSpec) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        conns = await asyncio.gather(
            *(
                open_mqtt(
                    session,
                    spec.target,
                    f"bench-{spec.run}-pub{p}",
                    spec.target.tokens[p] if spec.target.tokens else None,
                )
                for p in spec.pairs
            )
        )
        start_at = time.monotonic() + 0.05
        results = await asyncio.gather(
            *(_publisher(ws, spec, p, start_at) for ws, p in zip(conns, spec.pairs, strict=True))
        )
        for ws in conns:
            if not ws.closed:
                await ws.send_bytes(DISCONNECT)
                await ws.close()
        return list(results)


# -- subscribers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeSpec:
    target: Target
    run: str
    pairs: tuple[int, ...]
    qos: int
    messages: int  # expected per pair


@dataclass
class Tally:
    """What one subscriber saw: unique deliveries, duplicates, latencies (ns)."""

    expected: int
    seen: bytearray
    unique: int = 0
    duplicates: int = 0
    frames: int = 0  # WebSocket frames received: deliveries per frame shows the batching
    first_ns: int = 0
    last_ns: int = 0
    latencies: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]


async def _subscriber(
    ws: aiohttp.ClientWebSocketResponse, tally: Tally, qos: int, done: asyncio.Event
) -> None:
    parser = StreamParser()
    now = time.monotonic_ns
    unpack = PAYLOAD_HEADER.unpack_from
    lat = tally.latencies.append
    seen = tally.seen
    while tally.unique < tally.expected:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            break
        t = now()
        tally.frames += 1
        acks: list[bytes] = []
        for first, body in parser.feed(msg.data):
            if first >> 4 != 3:
                continue
            tlen = (body[0] << 8) | body[1]
            pos = 2 + tlen
            if first & 0x06:
                acks.append(b"\x40\x02" + bytes(body[pos : pos + 2]))
                pos += 2
            _pair, seq, sent_ns = unpack(body, pos)
            if seq < len(seen) and not seen[seq]:
                seen[seq] = 1
                tally.unique += 1
                lat(t - sent_ns)
                if not tally.first_ns:
                    tally.first_ns = t
                tally.last_ns = t
            else:
                tally.duplicates += 1
        if acks:
            await ws.send_bytes(b"".join(acks))
    done.set()


async def run_subscribers(spec: SubscribeSpec, conn: Connection) -> dict[str, Any]:
    """Connect and subscribe, say ``ready``, receive until all arrived or ``stop``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    try:
        async with aiohttp.ClientSession() as session:
            conns = []
            for p in spec.pairs:
                token = spec.target.tokens[p] if spec.target.tokens else None
                ws = await open_mqtt(session, spec.target, f"bench-{spec.run}-sub{p}", token)
                await ws.send_bytes(subscribe_packet(1, topic_for(spec.run, p), spec.qos))
                msg = await ws.receive(timeout=10)
                if msg.type is not aiohttp.WSMsgType.BINARY or msg.data[0] != 0x90:
                    raise ConnectionError(f"no SUBACK: {msg.type.name} {msg.data!r}")
                if msg.data[-1] & 0x80:
                    raise ConnectionError("SUBSCRIBE refused")
                conns.append(ws)
            tallies = [Tally(spec.messages, bytearray(spec.messages)) for _ in spec.pairs]
            done_events = [asyncio.Event() for _ in spec.pairs]
            conn.send(("ready",))
            tasks = [
                asyncio.create_task(_subscriber(ws, t, spec.qos, d))
                for ws, t, d in zip(conns, tallies, done_events, strict=True)
            ]
            all_done: asyncio.Future[list[bool]] = asyncio.gather(*(d.wait() for d in done_events))
            stopped: asyncio.Future[bool] = asyncio.create_task(stop.wait())
            pending: set[asyncio.Future[Any]] = {all_done, stopped}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in (*tasks, *pending):
                task.cancel()
            for ws in conns:
                if not ws.closed:
                    await ws.send_bytes(DISCONNECT)
                    await ws.close()
    finally:
        loop.remove_reader(conn.fileno())
    return {
        "pairs": [
            {
                "pair": p,
                "unique": t.unique,
                "duplicates": t.duplicates,
                "frames": t.frames,
                "first_ns": t.first_ns,
                "last_ns": t.last_ns,
                "latencies": t.latencies.tobytes(),
            }
            for p, t in zip(spec.pairs, tallies, strict=True)
        ]
    }


# -- the worker process -----------------------------------------------------------


def worker_main(conn: Connection, cpus: tuple[int, ...] | None) -> None:
    """Serve commands from the driver until it closes the pipe."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        kind = cmd[0]
        try:
            if kind == "publish":
                conn.send(("result", asyncio.run(run_publishers(cmd[1]))))
            elif kind == "subscribe":
                result = asyncio.run(run_subscribers(cmd[1], conn))
                # The driver's "stop" (if it sent one) is still in the pipe: drain it.
                while conn.poll():
                    conn.recv()
                conn.send(("result", result))
            elif kind == "exit":
                return
        except Exception as exc:  # report, keep serving: one failed scenario is not fatal
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
