#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of the session core, fed arbitrary byte streams
from the client and the broker, from the very start or after a valid CONNECT/auth/CONNACK
prefix, with timers, policy changes and closes in between. The invariants (no exception,
bounded memory, nothing upstream before authentication or against the policy) are checked
after every step: see tests/fuzz/harness.py for them and for the input format.

    .venv/bin/python tests/fuzz/fuzz_session.py tests/fuzz/corpus/session -max_total_time=3600
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["gateway"]):
    from tests.fuzz.harness import run_session_input_skipping_known


def test_one_input(data: bytes) -> None:
    run_session_input_skipping_known(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
