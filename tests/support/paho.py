"""A paho-mqtt client over wss with small blocking waits, for end-to-end tests."""

from __future__ import annotations

import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

WAIT = 5.0


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any = None


class Client:
    def __init__(
        self,
        port: int,
        ca: Path,
        *,
        client_id: str = "",
        version: int = 4,
        clean: bool = True,
        path: str = "/mqtt",
        username: str | None = None,
        password: str | None = None,
        host: str = "localhost",
        headers: dict[str, str] | None = None,
    ) -> None:
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {}
        if version != 5:
            kwargs["clean_session"] = clean
        self.version = version
        self.clean = clean
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport="websockets",
            **kwargs,
        )
        extra = dict(headers or {})

        def ws_headers(h: dict[str, str]) -> dict[str, str]:
            # paho sends Origin: https://host:port although it is no browser; drop it
            # unless a test sets one, as other non-browser clients do not send it.
            h.pop("Origin", None)
            h.update(extra)
            return h

        self.c.ws_set_options(path=path, headers=ws_headers)
        self.c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username is not None or password is not None:
            self.c.username_pw_set(username or "", password)
        self.host, self.port = host, port
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.unsubacks: queue.Queue[Any] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        self.c.reconnect_delay_set(60, 120)  # tests never want silent reconnects
        self._lock = threading.Lock()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connack.put((flags, rc, props))

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        self.messages.put(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain), props))

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[Any], props: Any = None) -> None:
        self.subacks.put(rcs)

    def _on_unsubscribe(self, c: Any, u: Any, mid: int, rcs: Any, props: Any = None) -> None:
        self.unsubacks.put(rcs)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.disconnects.put(rc)

    def will_set(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.c.will_set(topic, payload, qos, retain)

    def connect(self, *, properties: Properties | None = None, expect_ok: bool = True) -> Any:
        kwargs: dict[str, Any] = {}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            if properties is not None:
                kwargs["properties"] = properties
        self.c.connect(self.host, self.port, keepalive=30, **kwargs)
        self.c.loop_start()
        flags, rc, props = self.connack.get(timeout=WAIT)
        self.connack_flags, self.connack_props = flags, props
        if expect_ok:
            assert not rc.is_failure, f"CONNACK refused: {rc}"
        return rc

    def subscribe(self, topic: str, qos: int = 0, **options: Any) -> list[Any]:
        if self.version == 5:
            self.c.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **options))
        else:
            self.c.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def subscribe_many(self, topics: list[tuple[str, int]]) -> list[Any]:
        if self.version == 5:
            self.c.subscribe([(t, mqtt.SubscribeOptions(qos=q)) for t, q in topics])
        else:
            self.c.subscribe(topics)
        return self.subacks.get(timeout=WAIT)

    def unsubscribe(self, topic: str) -> Any:
        self.c.unsubscribe(topic)
        return self.unsubacks.get(timeout=WAIT)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        if qos > 0:
            info.wait_for_publish(WAIT)
            assert info.is_published(), "publish was not acknowledged"
        return info

    def expect(self, timeout: float = WAIT) -> Received:
        return self.messages.get(timeout=timeout)

    def expect_none(self, timeout: float = 0.5) -> None:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic!r}: {msg.payload!r}")

    def disconnect(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """An abrupt close: the socket goes away without DISCONNECT (the will fires)."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            sock.close()


def v5_props(packet: int = PacketTypes.CONNECT, **values: Any) -> Properties:
    p = Properties(packet)
    for k, v in values.items():
        setattr(p, k, v)
    return p


__all__ = ["Client", "ReasonCode", "Received", "v5_props"]
