"""The known-packet fast path (core/knownpackets.py): byte-level scans, and sessions that
use it behave exactly like sessions that decode every packet."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.acl import compile_policy
from gateway.core.knownpackets import KNOWN_TOPICS_MAX, KnownTopics, scan_known
from gateway.core.outputs import AuditEvent, LoggedAllow
from gateway.core.session import Session, SessionSettings, SessionState
from gateway.identity import Identity
from gateway.mqtt.constants import PropertyId
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connack, Connect, Puback, Publish
from gateway.mqtt.properties import Properties

NOW = 1_000.0
SETTINGS = SessionSettings(max_packet_size=65536, connect_timeout_s=10.0, receive_maximum=2)


def policy(*rules: dict[str, object]) -> object:
    doc = {"version": "2.0", "default_action": "deny", "rules": list(rules)}
    return compile_policy(orjson.loads(orjson.dumps(doc)))


OWN = policy(
    {"id": "own", "topic": "u/{user_id}/#", "action": "all", "effect": "allow", "qos": [0, 1]},
)
NOTHING = policy()
ALICE = Identity.from_values({"user_id": "alice"})


def session(level: int, quiet: bool, pol: object = OWN) -> Session:
    s = Session(SETTINGS, NOW, pol)  # type: ignore[arg-type]
    s.quiet_allows = quiet
    s.receive_from_client(encode(Connect("c1", protocol_level=level), level))
    s.auth_succeeded(ALICE, "alice:c1")
    s.upstream_connected()
    s.receive_from_upstream(encode(Connack(False, 0), level))
    assert s.state is SessionState.CONNECTED
    return s


def pub(topic: str, qos: int = 0, pid: int | None = None, level: int = 4, **kw: object) -> bytes:
    return encode(Publish(topic, b"payload", qos, packet_id=pid, **kw), level)  # type: ignore[arg-type]


def known(*pairs: tuple[int, bytes]) -> KnownTopics:
    k = KnownTopics()
    for first, topic in pairs:
        k.add(first, topic, allow_for(first, topic))
    return k


def allow_for(first: int, topic: bytes) -> LoggedAllow:
    d = OWN.authorize_publish(ALICE, topic.decode(), (first >> 1) & 3, bool(first & 1))  # type: ignore[attr-defined]
    return LoggedAllow("publish", topic.decode(), (first >> 1) & 3, bool(first & 1), d)


# -- scans -------------------------------------------------------------------------


def test_scan_takes_a_run_of_known_publishes_and_stops_at_an_unknown_topic() -> None:
    k = known((0x30, b"u/alice/a"), (0x32, b"u/alice/a"))
    data = pub("u/alice/a") + pub("u/alice/a", 1, 7) + pub("u/alice/b") + pub("u/alice/a")
    inflight: set[int] = set()
    end, packets, publishes, _ = scan_known(data, 0, k, False, 65536, inflight, 10)
    assert end == len(pub("u/alice/a")) + len(pub("u/alice/a", 1, 7))
    assert (packets, publishes) == (2, 2)
    assert inflight == {7}


def test_scan_keys_on_the_whole_first_byte() -> None:
    k = known((0x30, b"u/alice/a"))
    # Same topic, but retained, or QoS 1: another decision, so the full path's.
    assert scan_known(pub("u/alice/a", retain=True), 0, k, False, 65536, set(), 10)[0] == 0
    assert scan_known(pub("u/alice/a", 1, 1), 0, k, False, 65536, set(), 10)[0] == 0


def test_scan_leaves_partial_packets_for_later() -> None:
    k = known((0x30, b"u/alice/a"))
    data = pub("u/alice/a")
    for cut in range(len(data)):
        assert scan_known(data[:cut], 0, k, False, 65536, set(), 10) == (0, 0, 0, False)


def test_scan_refuses_what_the_full_decoder_must_judge() -> None:
    k = known((0x32, b"u/alice/a"), (0x30, b"u/alice/a"))
    # Packet identifier 0 (v5 2.2.1).
    assert (
        scan_known(
            pub("u/alice/a", 1, 1)[:-9] + b"\x00\x00" + b"payload", 0, k, False, 65536, set(), 10
        )[0]
        == 0
    )
    # The Receive Maximum is reached (v5 3.3.4): the full path disconnects.
    assert scan_known(pub("u/alice/a", 1, 9), 0, k, False, 65536, {1, 2}, 2)[0] == 0
    # A retransmission of one in flight is fine.
    assert scan_known(pub("u/alice/a", 1, 2), 0, k, False, 65536, {1, 2}, 2)[1] == 1
    # Larger than the maximum packet size.
    assert scan_known(pub("u/alice/a"), 0, k, False, 10, set(), 10)[0] == 0
    # A non-minimal Remaining Length (v5 1.5.5): 0x80 0x00.
    body = pub("u/alice/a")[2:]
    odd = bytes([0x30, 0x80 | len(body), 0x00]) + body
    assert scan_known(odd, 0, k, False, 65536, set(), 10)[0] == 0
    # A topic length that runs past the packet.
    bad = bytearray(pub("u/alice/a"))
    bad[3] = 200
    assert scan_known(bytes(bad), 0, k, False, 65536, set(), 10)[0] == 0


def test_v5_properties_take_the_full_path() -> None:
    k = known((0x30, b"u/alice/a"))
    plain = pub("u/alice/a", level=5)
    assert scan_known(plain, 0, k, True, 65536, set(), 10)[0] == len(plain)
    props = Properties([(PropertyId.USER_PROPERTY, ("k", "v"))])
    with_props = pub("u/alice/a", level=5, properties=props)
    assert scan_known(with_props, 0, k, True, 65536, set(), 10)[0] == 0


def test_two_byte_remaining_length() -> None:
    k = known((0x30, b"u/alice/a"))
    big = encode(Publish("u/alice/a", b"x" * 1000), 4)
    assert big[1] >= 0x80
    assert scan_known(big + big, 0, k, False, 65536, set(), 10)[:2] == (2 * len(big), 2)


def test_acks_and_pings_pass_and_upstream_pubacks_end_flows() -> None:
    k = KnownTopics()
    ping = b"\xc0\x00"
    ack = encode(Puback(5), 4)
    assert scan_known(ping + ack, 0, k, False, 65536, set(), 10) == (4 + 2, 2, 0, False)
    assert scan_known(b"\x40\x02\x00\x00", 0, k, False, 65536, set(), 10)[0] == 0
    inflight = {5, 6}
    assert scan_known(ack + b"\xd0\x00", 0, k, False, 65536, inflight, None) == (6, 2, 0, False)
    assert inflight == {6}


def test_qos2_is_never_known_and_the_set_is_bounded() -> None:
    k = KnownTopics()
    k.add(0x34, b"u/alice/a", allow_for(0x34, b"u/alice/a"))
    assert len(k) == 0
    for i in range(KNOWN_TOPICS_MAX + 5):
        k.add(0x30, f"t/{i}".encode(), allow_for(0x30, b"u/alice/a"))
    assert 0 < len(k) <= KNOWN_TOPICS_MAX


# -- sessions ----------------------------------------------------------------------


def test_session_forwards_known_publishes_byte_for_byte_and_counts_them() -> None:
    s = session(4, quiet=True)
    first = s.receive_from_client(pub("u/alice/a"))
    assert first.to_upstream == [pub("u/alice/a")]
    two = pub("u/alice/a") + pub("u/alice/a")
    step = s.receive_from_client(two)
    assert step.to_upstream == [two] and not step.actions
    assert s.allowed_counts["publish"] == 3
    assert s.coalesced_up == 1  # two packets in one chunk


def test_a_policy_change_forgets_what_was_known() -> None:
    s = session(5, quiet=True)
    s.receive_from_client(pub("u/alice/a", level=5))
    assert s.receive_from_client(pub("u/alice/a", level=5)).to_upstream
    s.policy_changed(NOTHING)  # type: ignore[arg-type]
    step = s.receive_from_client(pub("u/alice/a", level=5))
    assert step.to_upstream == []
    assert any(isinstance(a, AuditEvent) and a.verdict == "deny" for a in step.actions)
    # Deliveries too.
    s2 = session(4, quiet=True)
    s2.receive_from_upstream(pub("u/alice/a"))
    s2.policy_changed(NOTHING)  # type: ignore[arg-type]
    assert s2.receive_from_upstream(pub("u/alice/a")).to_client == []


def test_the_receive_maximum_holds_on_the_fast_path() -> None:
    s = session(5, quiet=True)  # receive_maximum 2
    assert s.receive_from_client(pub("u/alice/a", 1, 1, 5)).to_upstream
    assert s.receive_from_client(pub("u/alice/a", 1, 2, 5)).to_upstream
    step = s.receive_from_client(pub("u/alice/a", 1, 3, 5))
    assert step.to_upstream == []
    assert step.to_client == [b"\xe0\x01\x93"]  # DISCONNECT 0x93 Receive Maximum exceeded
    assert s.state is SessionState.CLOSED


def test_recording_allows_turns_the_fast_path_off() -> None:
    s = session(4, quiet=True)
    s.receive_from_client(pub("u/alice/a"))
    s.quiet_allows = False  # a live viewer now wants every allow as an event
    step = s.receive_from_client(pub("u/alice/a"))
    assert [a.verdict for a in step.actions if isinstance(a, AuditEvent)] == ["allow"]


TOPICS = ["u/alice/a", "u/alice/a", "u/alice/b", "u/bob/a", "x"]
packet_st = st.tuples(
    st.sampled_from(["client", "client", "upstream", "upack"]),
    st.sampled_from(TOPICS),
    st.sampled_from([0, 1, 1]),
    st.sampled_from(["", "", "retain", "props"]),
    st.integers(1, 4),
)
USER_PROPS = Properties([(PropertyId.USER_PROPERTY, ("k", "v"))])
Outcome = tuple[bytes, bytes, int, frozenset[int], SessionState]
Allowed = list[tuple[str, str, int, bool]]


def _encode(level: int, side: str, topic: str, qos: int, extra: str, pid: int) -> bytes:
    if side == "upack":
        return encode(Puback(pid), level)
    props = USER_PROPS if extra == "props" and level == 5 else Properties.EMPTY
    retain = extra == "retain" and side == "client"
    return pub(topic, qos, pid if qos else None, level, retain=retain, properties=props)


def _run(
    level: int,
    quiet: bool,
    packets: list[tuple[str, str, int, str, int]],
    cuts: list[int],
    sample_ratio: float = 0.0,
    allowed_log: Allowed | None = None,
) -> Outcome:
    """Consecutive packets for one side arrive as one chunk, cut at ``cuts``. With
    ``allowed_log``, the session keeps a ledger, and every allow it reports (as an event
    or in the ledger) is appended there as (action, topic, qos, retain), in order."""
    s = session(level, quiet)
    s.allow_sample_ratio = sample_ratio
    if allowed_log is not None:
        s.allow_ledger = []
    chunks: list[tuple[bool, bytes]] = []
    for side, *rest in packets:
        data = _encode(level, side, *rest)  # type: ignore[arg-type]
        from_client = side == "client"
        if chunks and chunks[-1][0] == from_client:
            chunks[-1] = (from_client, chunks[-1][1] + data)
        else:
            chunks.append((from_client, data))
    up: list[bytes] = []
    down: list[bytes] = []
    allowed = 0
    for from_client, data in chunks:
        pos = 0
        for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
            if cut <= pos:
                continue
            chunk, pos = data[pos:cut], cut
            step = s.receive_from_client(chunk) if from_client else s.receive_from_upstream(chunk)
            up.extend(step.to_upstream)
            down.extend(step.to_client)
            events = [a for a in step.actions if isinstance(a, AuditEvent) and a.verdict == "allow"]
            allowed += len(events)
            if allowed_log is not None:
                assert s.allow_ledger is not None
                allowed_log.extend((a.action, a.topic, a.qos, a.retain) for a in s.allow_ledger)
                s.allow_ledger.clear()
                allowed_log.extend(
                    (
                        e.kind,
                        str(e.attributes["topic"]),
                        int(e.attributes["qos"]),
                        bool(e.attributes["retain"]),
                    )  # type: ignore[call-overload]
                    for e in events
                )
    allowed += sum(s.allowed_counts.values())
    return b"".join(up), b"".join(down), allowed, frozenset(s._inflight), s.state


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([4, 5]),
    st.lists(packet_st, max_size=40),
    st.lists(st.integers(0, 600), max_size=6),
    st.sampled_from([0.0, 0.0, 0.3, 1.0]),
)
def test_fast_and_full_paths_agree(
    level: int,
    packets: list[tuple[str, str, int, str, int]],
    cuts: list[int],
    sample_ratio: float,
) -> None:
    """Whatever the packets and however they are split, a session that forwards known
    packets sends the same bytes each way and counts the same allowed decisions as one
    that decodes everything; with allow spans sampled, the allows it reports as events
    and the ones it counts add up to the same."""
    fast = _run(level, True, packets, cuts, sample_ratio)
    full = _run(level, False, packets, cuts)
    assert fast == full


def test_sampled_allows_become_events_and_the_rest_are_counted() -> None:
    """Allow spans sampled in the session (issue 7): at ratio 1 every allow is an event
    marked sampled (and known packets are not used, so none is skipped); at 0 none is."""
    s = session(4, quiet=True)
    s.allow_sample_ratio = 1.0
    for _ in range(3):
        step = s.receive_from_client(pub("u/alice/a"))
        (event,) = [a for a in step.actions if isinstance(a, AuditEvent)]
        assert (event.kind, event.verdict, event.sampled) == ("publish", "allow", True)
    assert s.allowed_counts.get("publish", 0) == 0
    s.allow_sample_ratio = 0.0
    assert not s.receive_from_client(pub("u/alice/a")).actions
    assert s.allowed_counts["publish"] == 1
    # Denies are never sampled: always an event, never marked.
    step = s.receive_from_client(pub("u/bob/a"))
    (deny,) = [a for a in step.actions if isinstance(a, AuditEvent)]
    assert (deny.verdict, deny.sampled) == ("deny", False)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 5]),
    st.lists(packet_st, max_size=40),
    st.lists(st.integers(0, 600), max_size=6),
    st.sampled_from([0.0, 0.0, 0.3]),
)
def test_the_ledger_logs_every_allow_the_full_path_reports(
    level: int,
    packets: list[tuple[str, str, int, str, int]],
    cuts: list[int],
    sample_ratio: float,
) -> None:
    """With an audit log and nothing else (issue 7): the known-packet lane stays on, and
    the ledger plus the sampled events name exactly the allows that a session decoding
    everything reports as events; with nothing sampled, in the same order."""
    fast_log: Allowed = []
    full_log: Allowed = []
    fast = _run(level, True, packets, cuts, sample_ratio, fast_log)
    full = _run(level, False, packets, cuts, 0.0, full_log)
    assert fast == full
    if sample_ratio:
        assert sorted(fast_log) == sorted(full_log)
    else:
        assert fast_log == full_log


def test_ledger_allows_from_known_packets_share_one_object_per_topic() -> None:
    s = session(4, quiet=True)
    s.allow_ledger = []
    s.receive_from_client(pub("u/alice/a"))
    step = s.receive_from_client(pub("u/alice/a") + pub("u/alice/a"))
    assert step.to_upstream == [pub("u/alice/a") + pub("u/alice/a")] and not step.actions
    first, second, third = s.allow_ledger
    # The full path's record carries its lookup time; the lane's share one object.
    assert first is not second and second is third
    assert (second.action, second.topic, second.qos, second.retain) == (
        "publish",
        "u/alice/a",
        0,
        False,
    )
    assert second.decision_ns == 0 and second.decision.rule_id == "own"
    assert s.allowed_counts["publish"] == 3
