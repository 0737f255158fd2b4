"""The session as a hypothesis state machine: random interleavings of valid and invalid
packets from both sides, split at random points, with time, policy changes and
re-authentication in between. Every step is checked by harness.SessionHarness."""

from __future__ import annotations

from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.core.session import SessionState
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from gateway.mqtt.properties import Properties
from tests.fuzz.harness import InvariantViolation, SessionHarness, known_bug

# Topics that meet every rule of harness.POLICY: allowed, denied inside an allow, other
# users', wildcards, $SYS, too deep, NUL-free but odd.
TOPICS = st.sampled_from(
    [
        "a/alice/x",
        "a/alice/secret/x",
        "a/alice/secret",
        "a/bob/x",
        "p/1",
        "p/1/2",
        "l/x",
        "r/x",
        "s/x",
        "$SYS/broker",
        "A/alice/x",
        "/a/alice/x",
        "a/alice/" + "/".join("d" * 9),
        "a/alice/" + "x" * 70,
    ]
)
FILTERS = st.one_of(
    TOPICS,
    st.sampled_from(
        [
            "a/alice/#",
            "a/+/x",
            "#",
            "+/alice/#",
            "p/+",
            "p/#",
            "r/#",
            "$share/g/s/#",
            "$share/h/s/#",
            "$share/g/a/alice/#",
            "a/alice/secret/#",
            "$SYS/#",
        ]
    ),
)
QOS = st.integers(0, 2)
PIDS = st.integers(1, 12)


def _run(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except InvariantViolation as exc:
        if known_bug(exc) is None:
            raise
        reject()


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = SessionHarness()
        self.level = 4
        self.pending_client = b""  # bytes of a packet being sent in pieces

    @initialize(
        level=st.sampled_from([4, 5]),
        from_start=st.booleans(),
        will=st.none() | TOPICS,
        refuse=st.booleans(),
    )
    def start(self, level: int, from_start: bool, will: str | None, refuse: bool) -> None:
        self.level = level
        self.h.level = level
        if not from_start and will is None:
            _run(lambda: self.h.connect_prefix(level))
            return
        self.h.refuse_auth = refuse
        w = Will(will, b"bye", 1) if will is not None else None
        c = Connect("c1", protocol_level=level, username="u", password=b"t", will=w, keep_alive=30)
        _run(lambda: self.h.client(encode(c, level)))
        _run(lambda: self.h.broker(encode(Connack(False, 0), level)))

    # -- the client -------------------------------------------------------------------

    def _client(self, data: bytes) -> None:
        _run(lambda: self.h.client(data))

    @rule(
        topic=TOPICS, qos=QOS, retain=st.booleans(), pid=PIDS, alias=st.none() | st.integers(1, 6)
    )
    def client_publish(
        self, topic: str, qos: int, retain: bool, pid: int, alias: int | None
    ) -> None:
        props = Properties([])
        if alias is not None and self.level == 5:
            props = Properties([(PropertyId.TOPIC_ALIAS, alias)])
        p = Publish(topic, b"m", qos, retain, packet_id=pid if qos else None, properties=props)
        self._client(encode(p, self.level))

    @precondition(lambda self: self.level == 5)
    @rule(alias=st.integers(1, 6), qos=QOS, pid=PIDS)
    def client_publish_by_alias(self, alias: int, qos: int, pid: int) -> None:
        props = Properties([(PropertyId.TOPIC_ALIAS, alias)])
        p = Publish("", b"m", qos, packet_id=pid if qos else None, properties=props)
        self._client(encode(p, 5))

    @rule(pid=PIDS, filters=st.lists(st.tuples(FILTERS, QOS), min_size=1, max_size=4))
    def client_subscribe(self, pid: int, filters: list[tuple[str, int]]) -> None:
        subs = tuple(Subscription(f, q) for f, q in filters)
        self._client(encode(Subscribe(pid, subs), self.level))

    @rule(pid=PIDS, filters=st.lists(FILTERS, min_size=1, max_size=3))
    def client_unsubscribe(self, pid: int, filters: list[str]) -> None:
        self._client(encode(Unsubscribe(pid, tuple(filters)), self.level))

    @rule(pid=PIDS, kind=st.sampled_from([Puback, Pubrec, Pubrel, Pubcomp]))
    def client_ack(self, pid: int, kind: type) -> None:
        self._client(encode(kind(pid), self.level))

    @rule()
    def client_ping(self) -> None:
        self._client(encode(Pingreq(), self.level))

    @precondition(lambda self: self.level == 5)
    @rule(method=st.sampled_from(["jwt", "other"]), code=st.sampled_from([0x19, 0x18, 0]))
    def client_auth(self, method: str, code: int) -> None:
        props = Properties(
            [(PropertyId.AUTHENTICATION_METHOD, method), (PropertyId.AUTHENTICATION_DATA, b"tok")]
        )
        self._client(encode(Auth(code, props), 5))

    @rule(level=st.sampled_from([4, 5]))
    def client_second_connect(self, level: int) -> None:
        self._client(encode(Connect("evil", protocol_level=level), level))

    @rule(data=st.binary(min_size=1, max_size=24))
    def client_garbage(self, data: bytes) -> None:
        self._client(data)

    @rule(
        topic=TOPICS,
        at=st.integers(0, 1 << 16),
        value=st.integers(0, 255),
    )
    def client_mutated_publish(self, topic: str, at: int, value: int) -> None:
        raw = bytearray(encode(Publish(topic, b"m", 1, packet_id=1), self.level))
        raw[at % len(raw)] = value
        self._client(bytes(raw))

    @rule(topic=TOPICS, cut=st.integers(1, 8))
    def client_split_publish_start(self, topic: str, cut: int) -> None:
        """The first bytes of a packet; the rest comes in a later step (or never)."""
        raw = encode(Publish(topic, b"split", 1, packet_id=2), self.level)
        self.pending_client = raw[cut:]
        self._client(raw[:cut])

    @precondition(lambda self: bool(self.pending_client))
    @rule()
    def client_split_publish_end(self) -> None:
        rest, self.pending_client = self.pending_client, b""
        self._client(rest)

    @rule(code=st.sampled_from([0, 4]))
    def client_disconnect(self, code: int) -> None:
        self._client(encode(Disconnect(code), self.level))

    @rule()
    def client_closes(self) -> None:
        _run(self.h.client_closed)

    # -- the broker -------------------------------------------------------------------

    def _broker(self, data: bytes) -> None:
        _run(lambda: self.h.broker(data))

    @rule(topic=TOPICS, qos=QOS, pid=PIDS, retain=st.booleans())
    def broker_delivers(self, topic: str, qos: int, pid: int, retain: bool) -> None:
        p = Publish(topic, b"d", qos, retain, packet_id=pid if qos else None)
        self._broker(encode(p, self.level))

    @precondition(lambda self: self.level == 5)
    @rule(topic=st.sampled_from(["", "a/alice/x", "a/bob/x"]), alias=st.integers(1, 6))
    def broker_delivers_by_alias(self, topic: str, alias: int) -> None:
        p = Publish(topic, b"d", 0, properties=Properties([(PropertyId.TOPIC_ALIAS, alias)]))
        self._broker(encode(p, 5))

    @rule(pid=PIDS, codes=st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4))
    def broker_suback(self, pid: int, codes: list[int]) -> None:
        self._broker(encode(Suback(pid, tuple(codes)), self.level))

    @rule(pid=PIDS, kind=st.sampled_from([Puback, Pubrec, Pubrel, Pubcomp]))
    def broker_ack(self, pid: int, kind: type) -> None:
        self._broker(encode(kind(pid), self.level))

    @rule(data=st.binary(min_size=1, max_size=24))
    def broker_garbage(self, data: bytes) -> None:
        self._broker(data)

    @rule()
    def broker_closes(self) -> None:
        _run(self.h.broker_closed)

    # -- the world --------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 5.0, 30.0, 46.0, 100.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        _run(lambda: self.h.tick(seconds))

    @rule()
    def policy_changes(self) -> None:
        _run(self.h.policy_change)

    @rule(refuse=st.booleans())
    def reauth_outcome(self, refuse: bool) -> None:
        self.h.refuse_reauth = refuse

    @invariant()
    def closed_stays_closed(self) -> None:
        s = self.h.session
        if s.state is SessionState.CLOSED:
            assert s.close_reason is not None


SessionMachine.TestCase.settings = settings(
    max_examples=600,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSessionMachine = SessionMachine.TestCase
