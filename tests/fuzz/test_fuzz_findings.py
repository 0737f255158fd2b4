"""What the fuzzers found (pinned), that the invariants can fail, and a short atheris run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.outputs import Step
from gateway.core.session import Session
from gateway.mqtt.decoder import RawPacket, decode_packet
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import Connect, Disconnect, Publish
from tests.fuzz.harness import (
    KNOWN_GATEWAY_BUGS,
    InvariantViolation,
    SessionHarness,
    record,
    run_session_input,
)

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def test_every_known_bug_has_its_test() -> None:
    names = {t.split("::")[1] for t in KNOWN_GATEWAY_BUGS.values()}
    assert names <= set(globals())


def test_second_connect_with_unknown_level_is_a_protocol_error() -> None:
    h = SessionHarness()
    h.connect_prefix(5)
    second = bytearray(encode(Connect("x", protocol_level=5), 5))
    second[8] = 7  # the protocol level byte: MQTT level 7
    step = h.session.receive_from_client(bytes(second))
    assert [decode_packet(b, 5) for b in step.to_client] == [Disconnect(0x82)]
    assert step.to_upstream == []


def test_the_invariants_catch_a_forwarded_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that forwarded every PUBLISH would be caught (the check can fail)."""

    def forward_all(self: Session, raw: RawPacket, packet: Publish, step: Step) -> None:
        step.to_upstream.append(raw.raw)

    monkeypatch.setattr(Session, "on_client_publish", forward_all)
    refused = encode(Publish("a/alice/secret/x", b"no", 0), 4)
    with pytest.raises(InvariantViolation, match="refused PUBLISH forwarded"):
        run_session_input(bytes([0]) + record(0, refused))


def test_the_invariants_catch_early_forwarding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that wrote upstream before authentication would be caught."""
    original = Session.receive_from_client

    def leaky(self: Session, data: bytes, now: float | None = None) -> Step:
        step = original(self, data, now)
        step.to_upstream.append(data)
        return step

    monkeypatch.setattr(Session, "receive_from_client", leaky)
    connect = encode(Connect("c1", username="u", password=b"t"), 4)
    with pytest.raises(InvariantViolation, match="before authentication"):
        run_session_input(bytes([1]) + record(0, connect))


def test_the_invariants_catch_unbounded_buffering(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that kept reading early data without limit would be caught."""
    monkeypatch.setattr("gateway.core.session.EARLY_DATA_SLACK", 1 << 30)
    connect = encode(Connect("c1", username="u", password=b"t"), 4)
    h = SessionHarness(refuse_auth=False)
    h.session.receive_from_client(connect)  # AUTHENTICATING; the shell has not answered
    big = encode(Publish("a/alice/x", b"x" * 1500, 0), 4)
    with pytest.raises(InvariantViolation, match="holds"):
        for _ in range(100):
            h._check_bounds()
            h.session.receive_from_client(big)


ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.mark.skipif(not ATHERIS, reason="atheris is not installed (pip install atheris)")
@pytest.mark.parametrize("target", ["decoder", "session"])
def test_short_atheris_run(target: str, tmp_path: Path) -> None:
    """A few seconds of coverage-guided fuzzing from the seed corpus (the long run: README)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    seconds = os.environ.get("FUZZ_SECONDS", "8")
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / f"fuzz_{target}.py"),
            str(corpus),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=int(seconds) + 60,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))
