#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of the MQTT decoder: arbitrary bytes give
packets, a request for more, or an ``MQTTError``; nothing else, and a bounded buffer.

    .venv/bin/python tests/fuzz/fuzz_decoder.py tests/fuzz/corpus/decoder -max_total_time=3600

See tests/fuzz/README.md for the long run and how to keep what it finds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["gateway"]):
    from gateway.mqtt.constants import MQTT_5, MQTT_311
    from tests.fuzz.harness import check_decoder

LEVELS = (None, MQTT_311, MQTT_5, 3)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    # The first byte chooses the protocol level and how the bytes are split into frames.
    level = LEVELS[data[0] & 3]
    split = data[0] >> 2  # 0: one frame; else frames of that many bytes
    check_decoder(data[1:], level, split)
    check_decoder(data, level, 0)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
