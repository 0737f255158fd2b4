"""CI run of the decoder fuzz target (hypothesis): random and mutated byte streams, split
into frames at random points. The long, coverage-guided run is fuzz_decoder.py."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import check_decoder

CORPUS = sorted((Path(__file__).parent / "corpus" / "decoder").iterdir())
SEEDS = [p.read_bytes() for p in CORPUS]
LEVELS = st.sampled_from([None, 3, 4, 5])
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_seed_corpus_decodes() -> None:
    assert len(SEEDS) >= 20
    decoded = sum(check_decoder(s, level) for s in SEEDS for level in (None, 4, 5))
    # The hand-made seeds (make_corpus.py) are whole packets: hundreds decode.
    assert decoded >= 100


@FAST
@given(st.binary(max_size=300), LEVELS, st.integers(0, 8))
def test_random_bytes(data: bytes, level: int | None, split: int) -> None:
    check_decoder(data, level, split)


@FAST
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4),
    LEVELS,
    st.integers(0, 5),
)
def test_mutated_seeds(
    seed: bytes, changes: list[tuple[int, int]], level: int | None, split: int
) -> None:
    data = bytearray(seed)
    for index, value in changes:
        data[index % len(data)] = value
    check_decoder(bytes(data), level, split)


@FAST
@given(st.sampled_from(SEEDS), st.integers(0, 1 << 16), st.binary(max_size=16), LEVELS)
def test_truncated_and_extended_seeds(
    seed: bytes, cut: int, tail: bytes, level: int | None
) -> None:
    check_decoder(seed[: cut % (len(seed) + 1)] + tail, level, 1)
