"""The soak's clients: MQTT 3.1.1 and 5.0 over WebSocket Secure, hand-written, with reconnects.

Written apart from the gateway's codec on purpose: a load generator that shares the
gateway's encoder would agree with its bugs. Only what the soak sends and reads is here
(MQTT 5 spec 3.1 CONNECT, 3.2 CONNACK, 3.3 PUBLISH, 3.4 PUBACK, 3.8 SUBSCRIBE, 3.9
SUBACK, 3.12 PINGREQ, 3.14 DISCONNECT; 3.1.1 is the same without properties).

Every client keeps its state across connections: a publisher its unacknowledged
PUBLISHes (sent again, DUP set, after a reconnect: MQTT 5 spec 4.4), a subscriber what
it has seen (by publisher, kind and sequence number), so that losses and duplicates are
counted over the whole run, reconnects included.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

MQTT_311 = 4
MQTT_5 = 5

# Message kinds. The kind decides the topic and who should receive the message.
DATA = 0  # soak/data/{g}: allowed both ways for the whole run
REV = 1  # soak/rev/{g} before the policy update: subscribers of the group get it
REV_AFTER = 2  # soak/rev/{g} after it: the subscriptions are revoked, nobody may get it
SECRET = 3  # soak/secret/{g}: refused at publish and at subscribe, never delivered
KIND_NAMES = ("data", "rev", "rev-after-revoke", "secret")

# Payload: publisher index, kind, sequence number, monotonic ns at first send; padded.
PAYLOAD = struct.Struct(">IBIq")
PAYLOAD_SIZE = 64
KEEP_ALIVE_S = 60
SESSION_EXPIRY_S = 3600  # v5 Session Expiry Interval (3.1.2.11.2): outlives any restart here
# A publisher keeps at most this many QoS 1 PUBLISHes unacknowledged; the gateway's
# receive maximum is 100, so the window never trips it.
MAX_INFLIGHT = 20
# Reconnect backoff with full jitter: a thousand clients that lost the broker together
# must not come back together.
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 8.0
CONNACK_TIMEOUT_S = 10.0


def topic_for(kind: int, group: int) -> str:
    part = ("data", "rev", "rev", "secret")[kind]
    return f"soak/{part}/{group}"


# -- encoding (MQTT 5 spec 1.5.5 variable byte integer, 1.5.4 UTF-8 string) ------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect_packet(
    level: int, client_id: str, password: str, clean_start: bool, *, keep_session: bool = True
) -> bytes:
    """CONNECT with user name and password (the JWT); v5 asks for a session that outlives
    us unless ``keep_session`` is False (then it ends with the connection, v5 3.1.2.11.2)."""
    flags = 0xC0 | (0x02 if clean_start else 0)
    props = b""
    if level == MQTT_5:
        p = b"\x11" + struct.pack(">I", SESSION_EXPIRY_S if keep_session else 0)
        props = varint(len(p)) + p
    body = (
        utf8("MQTT")
        + bytes([level, flags])
        + struct.pack(">H", KEEP_ALIVE_S)
        + props
        + utf8(client_id)
        + utf8("soak")
        + utf8(password)
    )
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(level: int, packet_id: int, filters: list[str]) -> bytes:
    body = struct.pack(">H", packet_id) + (b"\x00" if level == MQTT_5 else b"")
    for f in filters:
        body += utf8(f) + b"\x01"  # QoS 1; v5 options otherwise 0 (3.8.3.1)
    return b"\x82" + varint(len(body)) + body


def publish_packet(level: int, topic: str, packet_id: int, payload: bytes) -> bytes:
    body = utf8(topic) + struct.pack(">H", packet_id)
    if level == MQTT_5:
        body += b"\x00"  # no properties
    body += payload
    return b"\x32" + varint(len(body)) + body  # QoS 1


def puback(packet_id_bytes: bytes) -> bytes:
    return b"\x40\x02" + packet_id_bytes  # reason 0 may be left out in v5 (3.4.2.1)


PINGREQ = b"\xc0\x00"
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
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end and i < pos + 5:  # at most 4 length bytes (1.5.5)
                b = data[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break
            out.append((data[pos], data[i : i + length]))
            pos = i + length
        if pos < end:
            self.rest = data[pos:]
        return out


def skip_properties(body: bytes, pos: int) -> int:
    """The position after a v5 property block starting at ``pos`` (2.2.2)."""
    length, shift = 0, 0
    while True:
        b = body[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return pos + length


# -- the world the clients share ------------------------------------------------------


@dataclass
class Phase:
    """What the driver tells every client: whether to publish, to connect, and which kind."""

    publishing: bool = False
    rev_paused: bool = False  # the REV slot sends DATA while the driver quiesces REV traffic
    revoked: bool = False  # the policy update is in force: REV slots send REV_AFTER
    stopping: bool = False
    started: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Link:
    """Connection bookkeeping common to publishers and subscribers."""

    connects: int = 0
    session_present: int = 0  # reconnects answered with Session Present = 1
    session_lost: int = 0  # reconnects answered with Session Present = 0
    failures: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    last_connected: float = 0.0
    last_lost: float = 0.0


class Client:
    """One MQTT connection through the gateway that comes back after it is lost."""

    def __init__(
        self,
        phase: Phase,
        session: aiohttp.ClientSession,
        url: str,
        ssl_ctx: ssl.SSLContext,
        level: int,
        client_id: str,
        token: str,
    ) -> None:
        self.phase = phase
        self.http = session
        self.url = url
        self.ssl_ctx = ssl_ctx
        self.level = level
        self.client_id = client_id
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.link = Link()
        self.epoch = 0  # connections that reached CONNACK 0, 1-based
        self.up = asyncio.Event()
        self.ever_up = asyncio.Event()

    async def send(self, data: bytes) -> bool:
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_bytes(data)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        return True

    async def run(self, gate: asyncio.Semaphore | None = None) -> None:
        """Connect, serve, and after a loss reconnect with backoff, until the phase stops."""
        backoff = BACKOFF_MIN_S
        while not self.phase.stopping:
            ok = await self._one_connection(gate if self.epoch == 0 else None)
            if self.phase.stopping:
                return
            if ok:
                backoff = BACKOFF_MIN_S
                continue
            await asyncio.sleep(random.uniform(0.05, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _one_connection(self, gate: asyncio.Semaphore | None) -> bool:
        """One connection: True if it reached CONNACK 0 (whatever ended it later).

        ``gate`` bounds how many first connections are being set up at once.
        """
        if gate is None:
            return await self._one_connection_gated(lambda: None)
        await gate.acquire()
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                gate.release()

        try:
            return await self._one_connection_gated(release)
        finally:
            release()

    async def _one_connection_gated(self, connected: Callable[[], None]) -> bool:
        try:
            ws = await self.http.ws_connect(
                self.url,
                protocols=("mqtt",),
                ssl=self.ssl_ctx,
                autoping=True,
                compress=0,
                max_msg_size=0,
                heartbeat=None,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.link.failures[f"upgrade: {type(exc).__name__}"] += 1
            return False
        try:
            await ws.send_bytes(connect_packet(self.level, self.client_id, self.token, False))
            parser = StreamParser()
            connack: bytes | None = None
            rest: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + CONNACK_TIMEOUT_S
            while connack is None:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    self.link.failures[f"no CONNACK: {msg.type.name}"] += 1
                    return False
                packets = parser.feed(msg.data)
                for i, (first, body) in enumerate(packets):
                    if first >> 4 == 2:
                        connack = body
                        rest = packets[i + 1 :]
                        break
            if connack[1] != 0:
                self.link.failures[f"CONNACK 0x{connack[1]:02x}"] += 1
                return False
            self.epoch += 1
            self.link.connects += 1
            present = bool(connack[0] & 1)
            if self.epoch > 1:
                if present:
                    self.link.session_present += 1
                else:
                    self.link.session_lost += 1
            self.ws = ws
            self.link.last_connected = self.phase.now()
            self.up.set()
            self.ever_up.set()
            connected()
            await self.on_connected(present)
            if rest:
                await self.on_packets(rest)
            await self._read(ws, parser)
            return True
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            self.link.failures[f"session: {type(exc).__name__}"] += 1
            return self.ws is not None
        finally:
            if self.ws is ws:
                self.link.last_lost = self.phase.now()
            self.ws = None
            self.up.clear()
            if not ws.closed:
                await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, parser: StreamParser) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.BINARY:
                if not self.phase.stopping:
                    self.link.closes[f"{msg.type.name} {ws.close_code}"] += 1
                return
            await self.on_packets(parser.feed(msg.data))

    async def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        for first, body in packets:
            kind = first >> 4
            if kind == 14 and not self.phase.stopping:  # server DISCONNECT (v5 3.14)
                reason = body[0] if body else 0
                self.link.closes[f"DISCONNECT 0x{reason:02x}"] += 1

    async def on_connected(self, session_present: bool) -> None:
        return None

    async def close(self) -> None:
        """The end of the run: a clean DISCONNECT, then the WebSocket close."""
        ws = self.ws
        if ws is not None and not ws.closed:
            await self.send(DISCONNECT)
            await ws.close()


# -- publishers -----------------------------------------------------------------------


@dataclass
class Pending:
    kind: int
    seq: int
    packet: bytes


@dataclass
class Sequences:
    """Per kind: what was sent and what came back (bytearrays indexed by sequence number)."""

    sent: int = 0
    acked: bytearray = field(default_factory=bytearray)  # 1: PUBACK < 0x80
    refused: Counter[int] = field(default_factory=Counter)  # PUBACK reason -> count
    retransmitted: set[int] = field(default_factory=set)


class Publisher(Client):
    """Publishes a fixed cycle of kinds at a steady rate, QoS 1, to its group's topics."""

    CYCLE = (DATA, DATA, DATA, REV, SECRET)

    def __init__(self, index: int, group: int, interval_s: float, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.index = index
        self.group = group
        self.interval_s = interval_s
        self.seqs = [Sequences() for _ in KIND_NAMES]
        self.inflight: dict[int, Pending] = {}
        self.next_pid = 1
        self.skipped = 0  # ticks with the window full or no connection
        self.stray_acks = 0
        self.double_acks = 0
        self.retransmissions = 0
        self.pad = bytes(PAYLOAD_SIZE - PAYLOAD.size)

    def unacked(self, kind: int | None = None) -> int:
        return sum(1 for p in self.inflight.values() if kind is None or p.kind == kind)

    async def on_connected(self, session_present: bool) -> None:
        # MQTT 5 spec 4.4: unacknowledged PUBLISHes are sent again, DUP set, same id.
        # Without a session (Session Present 0) they go again too: at least once.
        for pid in sorted(self.inflight):
            p = self.inflight[pid]
            self.seqs[p.kind].retransmitted.add(p.seq)
            self.retransmissions += 1
            if not await self.send(bytes([p.packet[0] | 0x08]) + p.packet[1:]):
                return

    async def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        await super().on_packets(packets)
        for first, body in packets:
            if first >> 4 != 4:
                continue
            pid = (body[0] << 8) | body[1]
            reason = body[2] if len(body) > 2 else 0
            p = self.inflight.pop(pid, None)
            if p is None:
                self.stray_acks += 1
                continue
            s = self.seqs[p.kind]
            if reason < 0x80:
                if s.acked[p.seq]:
                    self.double_acks += 1
                s.acked[p.seq] = 1
            else:
                s.refused[reason] += 1

    def _pid(self) -> int:
        while self.next_pid in self.inflight:
            self.next_pid = self.next_pid % 65535 + 1
        pid = self.next_pid
        self.next_pid = pid % 65535 + 1
        return pid

    async def pace(self) -> None:
        """One PUBLISH per interval while the phase says so (a random start spreads them)."""
        await asyncio.sleep(random.uniform(0, self.interval_s))
        slot = self.index % len(self.CYCLE)
        next_at = time.monotonic()
        while not self.phase.stopping:
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.phase.publishing:
                continue
            if self.ws is None or len(self.inflight) >= MAX_INFLIGHT:
                self.skipped += 1
                continue
            kind = self.CYCLE[slot]
            slot = (slot + 1) % len(self.CYCLE)
            if kind == REV:
                if self.phase.rev_paused:
                    kind = DATA
                elif self.phase.revoked:
                    kind = REV_AFTER
            s = self.seqs[kind]
            seq = s.sent
            s.sent += 1
            s.acked.append(0)
            payload = PAYLOAD.pack(self.index, kind, seq, time.monotonic_ns()) + self.pad
            pid = self._pid()
            packet = publish_packet(self.level, topic_for(kind, self.group), pid, payload)
            self.inflight[pid] = Pending(kind, seq, packet)
            await self.send(packet)  # if it fails, the reconnect sends it again


# -- subscribers ----------------------------------------------------------------------


@dataclass
class Duplicate:
    publisher: int
    kind: int
    seq: int
    dup_flag: bool
    other_connection: bool  # the first copy came on an earlier connection


class Subscriber(Client):
    """Holds its filters, counts every delivery by (publisher, kind, sequence number)."""

    def __init__(self, index: int, group: int | None, filters: list[str], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.index = index
        self.group = group  # None: the wildcard subscriber (soak/data/+)
        self.filters = filters
        # (publisher, kind) -> bytearray: 0 unseen, else the connection epoch (mod 255) + 1.
        self.seen: dict[tuple[int, int], bytearray] = {}
        self.delivered = 0
        self.duplicates: list[Duplicate] = []
        self.unexpected: Counter[str] = Counter()  # deliveries it must never get
        self.suback: list[tuple[float, str, int]] = []  # (time, filter, code)
        self.subscribes = 0
        self.subscribed = asyncio.Event()

    async def on_connected(self, session_present: bool) -> None:
        # With Session Present 1 the broker kept the subscriptions (and queued QoS 1
        # messages); a client subscribes again only when it has no session.
        if not session_present:
            self.subscribes += 1
            await self.send(subscribe_packet(self.level, self.subscribes % 65535 + 1, self.filters))
        else:
            self.subscribed.set()

    def _expects(self, kind: int) -> bool:
        if self.group is None:
            return kind == DATA
        if kind == DATA:
            return True
        return kind == REV and any(f.startswith("soak/rev/") for f in self.filters)

    async def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        await super().on_packets(packets)
        acks: list[bytes] = []
        mark = self.epoch % 255 + 1
        for first, body in packets:
            kind_bits = first >> 4
            if kind_bits == 9:
                pos = 2
                if self.level == MQTT_5:
                    pos = skip_properties(body, pos)
                t = self.phase.now()
                for f, code in zip(self.filters, body[pos:], strict=False):
                    self.suback.append((t, f, code))
                self.subscribed.set()
                continue
            if kind_bits != 3:
                continue
            tlen = (body[0] << 8) | body[1]
            pos = 2 + tlen
            if first & 0x06:
                acks.append(puback(body[pos : pos + 2]))
                pos += 2
            if self.level == MQTT_5:
                pos = skip_properties(body, pos)
            pub, kind, seq, _sent_ns = PAYLOAD.unpack_from(body, pos)
            if not self._expects(kind):
                topic = body[2 : 2 + tlen].decode(errors="replace")
                self.unexpected[f"{KIND_NAMES[kind]} on {topic}"] += 1
                continue
            arr = self.seen.get((pub, kind))
            if arr is None:
                arr = self.seen[(pub, kind)] = bytearray()
            if seq >= len(arr):
                arr.extend(bytes(seq + 64 - len(arr)))
            if arr[seq]:
                self.duplicates.append(
                    Duplicate(pub, kind, seq, bool(first & 0x08), arr[seq] != mark)
                )
            else:
                arr[seq] = mark
                self.delivered += 1
        if acks:
            await self.send(b"".join(acks))


# -- the spy: straight to the broker --------------------------------------------------


class Spy:
    """A v3.1.1 client on Mosquitto's TCP listener, subscribed to what must never arrive.

    Persistent session (Clean Session 0), so that it keeps its subscription across the
    broker's restart: a refused PUBLISH that reached the broker is counted, whenever.
    """

    def __init__(self, phase: Phase, port: int, topic_filter: str) -> None:
        self.phase = phase
        self.port = port
        self.filter = topic_filter
        self.received: Counter[str] = Counter()
        self.connects = 0
        self.subscribed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        while not self.phase.stopping:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await self._one()
            if not self.phase.stopping:
                await asyncio.sleep(0.5)

    async def _one(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer = writer
        try:
            body = utf8("MQTT") + bytes([4, 0x00]) + struct.pack(">H", KEEP_ALIVE_S)
            body += utf8("soak-spy")
            writer.write(b"\x10" + varint(len(body)) + body)
            writer.write(subscribe_packet(MQTT_311, 1, [self.filter]))
            await writer.drain()
            self.connects += 1
            parser = StreamParser()
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for first, pbody in parser.feed(data):
                    if first >> 4 == 9:
                        self.subscribed.set()
                    elif first >> 4 == 3:
                        tlen = (pbody[0] << 8) | pbody[1]
                        self.received[pbody[2 : 2 + tlen].decode(errors="replace")] += 1
                        if first & 0x06:
                            writer.write(puback(pbody[2 + tlen : 4 + tlen]))
        finally:
            self._writer = None
            writer.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.write(DISCONNECT)
            self._writer.close()
