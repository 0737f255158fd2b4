"""CI run of the session fuzz target (hypothesis): arbitrary byte streams from both sides,
from the very start and after a valid CONNECT/auth/CONNACK prefix, checked after every step
for the invariants in harness.py. The long, coverage-guided run is fuzz_session.py."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from gateway.core.session import SessionState
from tests.fuzz.harness import InvariantViolation, known_bug, record, run_session_input

CORPUS = sorted((Path(__file__).parent / "corpus" / "session").iterdir())
SEEDS = [p.read_bytes() for p in CORPUS]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(data: bytes) -> None:
    try:
        run_session_input(data)
    except InvariantViolation as exc:
        if known_bug(exc) is None:
            raise
        reject()


def test_seed_corpus_holds_the_invariants() -> None:
    states = set()
    for seed in SEEDS:
        try:
            states.add(run_session_input(seed).session.state)
        except InvariantViolation as exc:
            if known_bug(exc) is None:
                raise
    # The seeds reach both a live session and a closed one.
    assert {SessionState.CONNECTED, SessionState.CLOSED} <= states


records = st.builds(
    record,
    st.integers(0, 5),
    st.binary(max_size=64),
)


@FAST
@given(st.integers(0, 15), st.lists(records, max_size=12))
def test_random_streams(mode: int, recs: list[bytes]) -> None:
    run(bytes([mode]) + b"".join(recs))


@FAST
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_seeds(seed: bytes, changes: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for index, value in changes:
        data[index % len(data)] = value
    run(bytes(data))


@FAST
@given(st.sampled_from(SEEDS), st.integers(1, 7))
def test_seeds_split_into_small_frames(seed: bytes, size: int) -> None:
    """Every client and broker record re-sent in frames of ``size`` bytes."""
    out = bytearray(seed[:1])
    pos = 1
    while pos + 3 <= len(seed):
        op, n = seed[pos], int.from_bytes(seed[pos + 1 : pos + 3], "big")
        chunk = seed[pos + 3 : pos + 3 + n]
        pos += 3 + len(chunk)
        if op % 6 in (0, 1) and chunk:
            out += b"".join(record(op, chunk[i : i + size]) for i in range(0, len(chunk), size))
        else:
            out += record(op, chunk, n if op % 6 == 2 else None)
    run(bytes(out))
