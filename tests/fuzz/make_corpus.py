"""Write the seed corpus under ``tests/fuzz/corpus/`` (deterministic; re-run after codec changes).

    .venv/bin/python -m tests.fuzz.make_corpus

``corpus/decoder/``: one valid packet of every type in v3.1.1 and v5, plus streams of
several packets. ``corpus/session/``: session inputs (format in ``harness.py``) that
reach every state: connected flows, refused publishes, aliases, re-authentication,
timers, policy changes, and CONNECTs from nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.mqtt.constants import PropertyId
from gateway.mqtt.encoder import encode
from gateway.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from gateway.mqtt.properties import Properties
from tests.fuzz.harness import record

CORPUS = Path(__file__).parent / "corpus"


def _props(*items: tuple[PropertyId, object]) -> Properties:
    return Properties(list(items))  # type: ignore[arg-type]


def packets(level: int) -> list[bytes]:
    v5 = level == 5
    alias = _props((PropertyId.TOPIC_ALIAS, 1)) if v5 else Properties([])
    user = _props((PropertyId.USER_PROPERTY, ("k", "v"))) if v5 else Properties([])
    will_props = _props((PropertyId.WILL_DELAY_INTERVAL, 5)) if v5 else Properties([])
    out = [
        Connect("c1", protocol_level=level, username="u", password=b"t", keep_alive=30),
        Connect(
            "c2",
            protocol_level=level,
            will=Will("a/alice/will", b"bye", 1, False, will_props),
            clean_start=False,
        ),
        Connack(False, 0),
        Publish("a/alice/x", b"hello", 0),
        Publish("a/alice/x", b"hello", 1, packet_id=1, properties=user),
        Publish("a/alice/secret/x", b"no", 2, packet_id=2),
        Publish("a/alice/r", b"r", 1, retain=True, packet_id=3, properties=alias),
        Puback(1),
        Pubrec(2),
        Pubrel(2),
        Pubcomp(2),
        Subscribe(4, (Subscription("a/alice/#", 2), Subscription("b/#", 1))),
        Suback(4, (2, 0x80)),
        Unsubscribe(5, ("a/alice/#",)),
        Unsuback(5, (0,) if v5 else ()),
        Pingreq(),
        Pingresp(),
        Disconnect(0),
    ]
    if v5:
        out.append(Publish("", b"aliased", 0, properties=alias))
        out.append(Subscribe(6, (Subscription("$share/g/s/x", 1, False, True, 2),)))
        auth = _props(
            (PropertyId.AUTHENTICATION_METHOD, "jwt"), (PropertyId.AUTHENTICATION_DATA, b"tok")
        )
        out.append(Auth(0x19, auth))
    return [encode(p, level) for p in out]  # type: ignore[arg-type]


def decoder_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for level in (4, 5):
        ps = packets(level)
        seeds += ps
        seeds.append(b"".join(ps))
    seeds.append(encode(Connect("old", protocol_level=3, protocol_name="MQIsdp"), 3))
    return seeds


def session_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for level, mode in ((4, 0), (5, 2)):
        ps = packets(level)
        pub_ok = encode(Publish("a/alice/x", b"ok", 1, packet_id=7), level)
        pub_no = encode(Publish("a/alice/secret/y", b"no", 2, packet_id=8), level)
        sub = encode(Subscribe(9, (Subscription("a/alice/#", 1), Subscription("x/#", 0))), level)
        seeds.append(bytes([mode]) + b"".join(record(0, p) for p in ps[3:]))
        seeds.append(
            bytes([mode])
            + record(0, pub_ok + pub_no)
            + record(1, encode(Puback(7), level))
            + record(0, encode(Pubrel(8), level))
            + record(0, sub)
            + record(1, encode(Suback(9, (1,)), level))
            + record(1, encode(Publish("a/alice/in", b"d", 1, packet_id=3), level))
            + record(1, encode(Publish("x/leak", b"d", 1, packet_id=4), level))
            + record(3)
            + record(2, length=50)
            + record(0, encode(Pingreq(), level))
            + record(2, length=200)
        )
        seeds.append(bytes([mode]) + b"".join(record(1, p) for p in ps))
        # From nothing: CONNECT split at every byte, then early packets.
        connect = encode(Connect("c1", protocol_level=level, username="u", password=b"t"), level)
        seeds.append(
            bytes([mode | 1])
            + b"".join(record(0, connect[i : i + 1]) for i in range(len(connect)))
            + record(0, pub_ok)
            + record(1, encode(Connack(False, 0), level))
            + record(1, encode(Puback(7), level))
        )
        seeds.append(bytes([mode | 5]) + record(0, connect + pub_no))
        seeds.append(bytes([mode | 1]) + record(2, length=30) + record(0, connect[:5]))
    v5 = packets(5)
    seeds.append(bytes([2 | 8]) + record(0, v5[-1]))  # a refused re-authentication
    seeds.append(bytes([2]) + record(0, v5[-1]) + record(0, v5[-1]))  # AUTH while pending
    return seeds


def write(name: str, seeds: list[bytes]) -> int:
    directory = CORPUS / name
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(seeds)


def main() -> None:
    print("decoder", write("decoder", decoder_seeds()))
    print("session", write("session", session_seeds()))


if __name__ == "__main__":
    main()
