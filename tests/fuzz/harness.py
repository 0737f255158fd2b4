"""Fuzz targets for the codec and the session core, with the invariants of issue 9, item 1.

Shared by the atheris harnesses (``fuzz_decoder.py``, ``fuzz_session.py``, the long run) and
the hypothesis tests (``test_fuzz_*.py``, the CI run). Every input must keep these true:

1. No exception escapes but the documented ones: the decoder raises only ``MQTTError``; the
   session raises nothing at all (it turns every ``MQTTError`` into a close).
2. Bounded memory: the decoders never hold more than a packet (plus the early-data slack
   before CONNACK), alias maps and in-flight windows stay under their maxima.
3. Nothing goes upstream before ``auth_succeeded``.
4. Nothing goes upstream that the policy refuses: every PUBLISH, SUBSCRIBE filter and Will
   the broker would receive is re-checked against the session's policy at that moment;
   and every PUBLISH the client receives passes the delivery check.
5. What the gateway writes either way is well-formed MQTT (the gateway's own decoder reads it).

Session input format (so seeds can be written by hand, see ``make_corpus.py``)::

    byte 0: mode   bit0: start from nothing (else from a connected v3.1.1/v5 session)
                   bit1: MQTT 5 (for the connected prefix)
                   bit2: the shell refuses the credentials (with bit0)
                   bit3: the shell refuses a re-authentication
    then records:  op (1 byte) | length (2 bytes, big endian) | data (length bytes)
                   op % 6: 0 bytes from the client, 1 bytes from the broker,
                   2 time passes (length seconds), 3 the policy changes,
                   4 the client closes, 5 the broker closes
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import orjson

from gateway.acl import Policy, compile_policy
from gateway.core.outputs import (
    Authenticate,
    Close,
    OpenUpstream,
    Reauthenticate,
    Step,
)
from gateway.core.session import EARLY_DATA_SLACK, Session, SessionSettings, SessionState
from gateway.identity import Identity
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.decoder import PacketDecoder
from gateway.mqtt.encoder import encode
from gateway.mqtt.errors import MQTTError
from gateway.mqtt.packets import Connack, Connect, Publish, Subscribe

NOW = 1_000_000.0

# Small limits, so that short inputs reach them.
SETTINGS = SessionSettings(
    max_packet_size=2048,
    connect_timeout_s=10.0,
    upstream_username="gw",
    upstream_password=b"gw-secret",
    topic_alias_maximum=4,
    max_topic_length=64,
    max_topic_levels=8,
    max_subscriptions=8,
    receive_maximum=8,
    max_keep_alive_s=60,
)


def _policy(rules: list[dict[str, object]], name: str) -> Policy:
    doc = {"version": "2.0", "default_action": "deny", "rules": rules}
    return compile_policy(orjson.loads(orjson.dumps(doc)), source=name)


# Allows and denies of every kind, so that random topics meet both.
POLICY = _policy(
    [
        {
            "id": "own",
            "topic": "a/{user_id}/#",
            "action": "all",
            "effect": "allow",
            "qos": [0, 1, 2],
            "retain": True,
        },
        {"id": "secret", "topic": "a/{user_id}/secret/#", "action": "all", "effect": "deny"},
        {"id": "plus", "topic": "p/+", "action": "all", "effect": "allow", "qos": [0, 1]},
        {"id": "low", "topic": "l/#", "action": "publish", "effect": "allow", "qos": [0]},
        {"id": "read", "topic": "r/#", "action": "subscribe", "effect": "allow"},
        {
            "id": "share",
            "topic": "s/#",
            "action": "subscribe",
            "effect": "allow",
            "share_group": "g",
        },
    ],
    "fuzz",
)
# What a live policy change swaps in: narrower, so revocations happen.
NARROW_POLICY = _policy(
    [{"id": "own", "topic": "a/{user_id}/x", "action": "all", "effect": "allow"}], "fuzz-narrow"
)
UPSTREAM_CLIENT_ID = "alice:c1"
ALICE = Identity.from_values({"user_id": "alice"}, subject="alice", expires_at=NOW + 600)

# Invariant 2: a decoder may hold one incomplete packet; before CONNACK the client may also
# send EARLY_DATA_SLACK bytes ahead (session.py).
CLIENT_BUFFER_BOUND = SETTINGS.max_packet_size + EARLY_DATA_SLACK
UPSTREAM_BUFFER_BOUND = SETTINGS.max_packet_size
# Packet identifiers are 16 bits: no per-id set can grow past this.
PACKET_ID_SPACE = 65535
MAX_RECORD = 4096


class InvariantViolation(AssertionError):
    """A fuzz input broke one of the invariants in the module docstring."""


# Gateway bugs the fuzzers found, each pinned by a strict xfail test in test_fuzz_findings.py.
# The CI run skips inputs that hit only these (so that it keeps looking for new ones); when
# the lead fixes one, its xfail test passes, fails as strict, and the entry goes. Set
# FUZZ_STRICT=1 to report them anyway.
# Fixed: "reason code 0x84 not allowed in DISCONNECT" (a second CONNECT naming an unknown
# level), now the regression test_second_connect_with_unknown_level_is_a_protocol_error.
KNOWN_GATEWAY_BUGS: dict[str, str] = {}


def known_bug(exc: BaseException) -> str | None:
    """The xfail test that pins ``exc``, when it is a known gateway bug."""
    if os.environ.get("FUZZ_STRICT") == "1":
        return None
    text = str(exc)
    return next((test for pattern, test in KNOWN_GATEWAY_BUGS.items() if pattern in text), None)


def check_decoder(data: bytes, level: int | None, split: int = 0) -> int:
    """Feed ``data`` (in pieces of ``split`` bytes when > 0); return the packets decoded.

    Only ``MQTTError`` may be raised by the decoder; anything else propagates to the caller
    as a finding. The buffer never holds more than one packet's worth of unread bytes.
    """
    decoder = (
        PacketDecoder(max_packet_size=1 << 16, expect_connect=True)
        if level is None
        else PacketDecoder(max_packet_size=1 << 16, protocol_level=level)
    )
    pieces = [data] if split <= 0 else [data[i : i + split] for i in range(0, len(data), split)]
    count = 0
    for piece in pieces:
        decoder.feed(piece)
        try:
            while decoder.next_packet() is not None:
                count += 1
                if count > len(data):
                    raise InvariantViolation("more packets than bytes")
        except MQTTError:
            # Finished: every later call raises the same error again.
            try:
                decoder.next_packet()
            except MQTTError:
                return count
            raise InvariantViolation("decoder recovered after an error") from None
        if decoder.buffered > (1 << 16) + 5:
            raise InvariantViolation(f"decoder holds {decoder.buffered} bytes")
    return count


@dataclass
class SessionHarness:
    """Drives one ``Session`` as the shell would, checking every ``Step``."""

    level: int = 4
    refuse_auth: bool = False
    refuse_reauth: bool = False
    now: float = NOW
    session: Session = field(init=False)
    authenticated: bool = False
    # The streams as the broker and the client would read them.
    broker_view: PacketDecoder = field(init=False)
    client_view: PacketDecoder | None = None
    upstream_packets: int = 0

    def __post_init__(self) -> None:
        self.session = Session(SETTINGS, self.now, POLICY, client_id_factory=lambda: "assigned")
        self.broker_view = PacketDecoder(max_packet_size=1 << 20, expect_connect=True)

    # -- driving -------------------------------------------------------------------------

    def connect_prefix(self, level: int) -> None:
        """A valid CONNECT, authentication and the broker's CONNACK."""
        self.level = level
        self.client(
            encode(
                Connect("c1", protocol_level=level, username="u", password=b"t", keep_alive=30),
                level,
            )
        )
        self.broker(encode(Connack(False, 0), level))
        if self.session.state is not SessionState.CONNECTED:
            raise InvariantViolation(f"valid prefix left the session {self.session.state}")

    def client(self, data: bytes) -> None:
        self._check(self._call(lambda: self.session.receive_from_client(data, self.now)))

    def broker(self, data: bytes) -> None:
        self._check(self._call(lambda: self.session.receive_from_upstream(data)))

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self._check(self._call(lambda: self.session.handle_timer(self.now)))

    def policy_change(self) -> None:
        self._check(self._call(lambda: self.session.policy_changed(NARROW_POLICY)))

    def client_closed(self) -> None:
        self._check(self._call(self.session.client_closed))

    def broker_closed(self) -> None:
        self._check(self._call(self.session.upstream_closed))

    def run(self, data: bytes) -> None:
        """Interpret ``data`` in the session input format (module docstring)."""
        if not data:
            return
        mode, pos = data[0], 1
        self.refuse_reauth = bool(mode & 8)
        if mode & 1:
            self.refuse_auth = bool(mode & 4)
        else:
            self.connect_prefix(5 if mode & 2 else 4)
        while pos + 3 <= len(data):
            op = data[pos] % 6
            length = min(int.from_bytes(data[pos + 1 : pos + 3], "big"), MAX_RECORD)
            chunk = data[pos + 3 : pos + 3 + length]
            pos += 3 + len(chunk)
            if op == 0:
                self.client(chunk)
            elif op == 1:
                self.broker(chunk)
            elif op == 2:
                self.tick(float(length))
            elif op == 3:
                self.policy_change()
            elif op == 4:
                self.client_closed()
            else:
                self.broker_closed()

    # -- the shell's side of the protocol ---------------------------------------------------

    def _call(self, fn: object) -> Step:
        try:
            step = fn()  # type: ignore[operator]
        except Exception as exc:  # invariant 1: the session raises nothing
            raise InvariantViolation(f"session raised {type(exc).__name__}: {exc}") from exc
        assert isinstance(step, Step)
        return step

    def _check(self, step: Step) -> None:
        """Check one step, then carry out its actions like the shell (which may step again)."""
        if step.to_upstream and not self.authenticated:
            raise InvariantViolation(f"bytes upstream before authentication: {step.to_upstream!r}")
        for chunk in step.to_upstream:
            self._check_upstream(chunk)
        for chunk in step.to_client:
            self._check_to_client(chunk)
        self._check_bounds()
        for action in list(step.actions):
            if isinstance(action, Authenticate):
                if self.refuse_auth:
                    self._check(self._call(lambda: self.session.auth_failed("bad", 0x86, 0x04)))
                else:
                    self.authenticated = True
                    self._check(
                        self._call(lambda: self.session.auth_succeeded(ALICE, UPSTREAM_CLIENT_ID))
                    )
            elif isinstance(action, OpenUpstream):
                self._check(self._call(self.session.upstream_connected))
            elif isinstance(action, Reauthenticate):
                if self.refuse_reauth:
                    self._check(self._call(lambda: self.session.reauth_failed("bad_signature")))
                else:
                    self._check(self._call(lambda: self.session.reauth_succeeded(ALICE)))
            elif isinstance(action, Close) and self.session.state is not SessionState.CLOSED:
                raise InvariantViolation("Close action but the session is not closed")

    def _check_upstream(self, chunk: bytes) -> None:
        """Invariants 4 and 5 on what the broker receives."""
        self.broker_view.feed(chunk)
        try:
            while (raw := self.broker_view.next_packet()) is not None:
                self.upstream_packets += 1
                self._authorized_upstream(raw.packet)
        except MQTTError as exc:
            raise InvariantViolation(f"the broker would read a bad packet: {exc}") from exc
        if self.broker_view.buffered:
            raise InvariantViolation("a partial packet was written upstream")

    def _authorized_upstream(self, packet: object) -> None:
        policy, identity = self.session.policy, self.session.identity
        if isinstance(packet, Connect):
            # The broker sees the gateway's credentials and the derived client id, never
            # the client's token (issue 3, items 7 and 8).
            if (
                packet.username != SETTINGS.upstream_username
                or packet.password != SETTINGS.upstream_password
                or packet.client_id != UPSTREAM_CLIENT_ID
                or PropertyId.AUTHENTICATION_DATA in packet.properties
                or PropertyId.AUTHENTICATION_METHOD in packet.properties
            ):
                raise InvariantViolation(f"upstream CONNECT not rewritten: {packet!r}")
            if packet.will is not None:
                assert identity is not None
                w = packet.will
                d = policy.authorize_publish(identity, w.topic, w.qos, w.retain)
                if not d.allowed:
                    raise InvariantViolation(f"refused will forwarded: {w.topic!r}")
            return
        if identity is None:
            raise InvariantViolation(f"{type(packet).__name__} upstream without an identity")
        if isinstance(packet, Publish):
            d = policy.authorize_publish(identity, packet.topic, packet.qos, packet.retain)
            if not d.allowed:
                raise InvariantViolation(
                    f"refused PUBLISH forwarded: {packet.topic!r} qos={packet.qos} "
                    f"retain={packet.retain} ({d.reason})"
                )
            if PropertyId.TOPIC_ALIAS in packet.properties:
                raise InvariantViolation("a topic alias reached the broker")
        elif isinstance(packet, Subscribe):
            for sub in packet.subscriptions:
                d = policy.authorize_subscribe(identity, sub.topic_filter, sub.qos)
                if not d.allowed or d.granted_qos is None or sub.qos > d.granted_qos:
                    raise InvariantViolation(
                        f"refused filter forwarded: {sub.topic_filter!r} qos={sub.qos} ({d.reason})"
                    )

    def _check_to_client(self, chunk: bytes) -> None:
        """What the client receives is well-formed, and every delivery is allowed now."""
        level = self.session.protocol_level
        if level is None:
            # Answers to a CONNECT that could not be read: a lone CONNACK.
            return
        if self.client_view is None:
            self.client_view = PacketDecoder(max_packet_size=1 << 20, protocol_level=level)
        self.client_view.feed(chunk)
        try:
            while (raw := self.client_view.next_packet()) is not None:
                packet = raw.packet
                if isinstance(packet, Publish):
                    self._delivery_allowed(packet)
        except MQTTError as exc:
            raise InvariantViolation(f"the client would read a bad packet: {exc}") from exc

    def _delivery_allowed(self, packet: Publish) -> None:
        identity = self.session.identity
        if identity is None:
            raise InvariantViolation("PUBLISH to a client without an identity")
        policy = self.session.policy
        if policy.authorize_delivery(identity, packet.topic, packet.qos).allowed:
            return
        for group in self.session.subscriptions.share_groups():
            if policy.authorize_delivery(
                identity, packet.topic, packet.qos, share_group=group
            ).allowed:
                return
        raise InvariantViolation(f"refused delivery reached the client: {packet.topic!r}")

    def _check_bounds(self) -> None:
        """Invariant 2: what one connection can make the gateway hold."""
        s = self.session
        if s.state is SessionState.CLOSED:
            return
        if s._from_client.buffered > CLIENT_BUFFER_BOUND:
            raise InvariantViolation(f"client decoder holds {s._from_client.buffered} bytes")
        up = s._from_upstream
        if s.state is SessionState.CONNECTED and s._from_client.buffered > SETTINGS.max_packet_size:
            raise InvariantViolation(f"connected, yet {s._from_client.buffered} bytes unread")
        if up is not None and up.buffered > UPSTREAM_BUFFER_BOUND:
            raise InvariantViolation(f"upstream decoder holds {up.buffered} bytes")
        if len(s._client_aliases) > SETTINGS.topic_alias_maximum:
            raise InvariantViolation("client alias map over its maximum")
        if len(s._broker_aliases) > SETTINGS.topic_alias_maximum:
            raise InvariantViolation("broker alias map over its maximum")
        if len(s._inflight) > SETTINGS.receive_maximum:
            raise InvariantViolation(f"{len(s._inflight)} in flight > receive maximum")
        held = len(s.subscriptions.active) + sum(
            len(p.forwarded) for p in s.subscriptions.pending.values()
        )
        if held > SETTINGS.max_subscriptions:
            raise InvariantViolation(f"{held} subscriptions held > {SETTINGS.max_subscriptions}")
        for name, ids in (
            ("local QoS 2 from client", s._local_qos2_from_client),
            ("local QoS 2 from broker", s._local_qos2_from_broker),
            ("pending SUBSCRIBE", s.subscriptions.pending),
        ):
            if len(ids) > PACKET_ID_SPACE:
                raise InvariantViolation(f"{name}: {len(ids)} entries")


def run_session_input(data: bytes) -> SessionHarness:
    h = SessionHarness()
    h.run(data)
    return h


def run_session_input_skipping_known(data: bytes) -> None:
    """For the fuzzers: a known gateway bug is not a new finding."""
    try:
        run_session_input(data)
    except InvariantViolation as exc:
        if known_bug(exc) is None:
            raise


def record(op: int, data: bytes = b"", length: int | None = None) -> bytes:
    """One record of the session input format."""
    n = len(data) if length is None else length
    return bytes([op]) + n.to_bytes(2, "big") + data


__all__ = [
    "ALICE",
    "NARROW_POLICY",
    "POLICY",
    "SETTINGS",
    "InvariantViolation",
    "SessionHarness",
    "check_decoder",
    "record",
    "run_session_input",
]
