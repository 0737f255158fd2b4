"""The bridge's connections to the broker: a small pool of aiomqtt clients (MQTT 5.0).

Each link connects on first use and again after it breaks; while the broker is down a
link refuses at once for ``reconnect_backoff_s`` instead of making every request wait
out a connect timeout. A QoS 1/2 publish returns the broker's reason code from
PUBACK/PUBREC (MQTT 5.0 §3.4.2.1), so a broker that refuses the bridge is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# MQTT 5.0 §3.4.2.1: reason codes of 0x80 and above are failures.
FIRST_FAILURE_CODE = 0x80


class BrokerUnavailable(Exception):
    """The broker cannot be reached, or did not acknowledge in time."""


class BrokerRefused(Exception):
    """The broker answered the publish with a failure reason code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"broker refused the publish: 0x{code:02X}")
        self.code = code


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    client_id: str
    connect_timeout_s: float
    reconnect_backoff_s: float


class _AckingClient(aiomqtt.Client):
    """An aiomqtt client whose publish reports the acknowledgement's reason code.

    aiomqtt's own ``publish`` drops the PUBACK reason code; this keeps it per packet id.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ack_codes: dict[int, int] = {}

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        value = getattr(reason_code, "value", 0)
        self.ack_codes[mid] = value if isinstance(value, int) else 0
        super()._on_publish(client, userdata, mid, reason_code, properties)

    @property
    def broken(self) -> bool:
        done = self._disconnected.done()
        if done and not self._disconnected.cancelled():
            self._disconnected.exception()  # retrieved: asyncio need not warn about it
        return done

    async def publish_acked(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        timeout: float,
    ) -> int:
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        if qos == 0 or info.is_published():
            return self.ack_codes.pop(info.mid, 0)
        confirmation = asyncio.Event()
        with self._pending_call(info.mid, confirmation, self._pending_publishes):
            await self._wait_for(confirmation.wait(), timeout=timeout)
        return self.ack_codes.pop(info.mid, 0)


class UpstreamLink:
    """One pooled connection, (re)connected on demand."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self._client: _AckingClient | None = None
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None

    async def _connected(self) -> _AckingClient:
        async with self._lock:
            client = self._client
            if client is not None and not client.broken:
                return client
            if client is not None:
                self._client = None
                await _close(client)
            s = self.settings
            if self._failed_at is not None and (
                time.monotonic() - self._failed_at < s.reconnect_backoff_s
            ):
                raise BrokerUnavailable("broker unreachable (backing off)")
            client = _AckingClient(
                s.host,
                s.port,
                username=s.username,
                password=s.password,
                identifier=s.client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=s.tls,
                timeout=s.connect_timeout_s,
                clean_start=True,
            )
            try:
                await asyncio.wait_for(client.__aenter__(), s.connect_timeout_s)
            except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
                self._failed_at = time.monotonic()
                raise BrokerUnavailable(f"cannot connect to the broker: {exc}") from None
            self._failed_at = None
            self._client = client
            return client

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties,
        timeout: float,
    ) -> None:
        for attempt in (1, 2):
            client = await self._connected()
            try:
                code = await client.publish_acked(topic, payload, qos, retain, properties, timeout)
            except aiomqtt.MqttCodeError as exc:
                # Not sent (the link broke since its last use): one fresh connection.
                if attempt == 1 and exc.rc in (paho.MQTT_ERR_NO_CONN, paho.MQTT_ERR_CONN_LOST):
                    continue
                raise BrokerUnavailable(str(exc)) from None
            except aiomqtt.MqttError as exc:
                # Sent, no acknowledgement in time: the broker may or may not have it.
                raise BrokerUnavailable(f"no acknowledgement: {exc}") from None
            if code >= FIRST_FAILURE_CODE:
                raise BrokerRefused(code)
            return

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await _close(client)


async def _close(client: _AckingClient) -> None:
    with contextlib.suppress(aiomqtt.MqttError, OSError, RuntimeError, asyncio.TimeoutError):
        await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)


class UpstreamPool:
    """``size`` links used round robin; link ``i`` has client id ``<client_id>-<i>``."""

    def __init__(self, settings: LinkSettings, size: int) -> None:
        self.links = [
            UpstreamLink(_with_client_id(settings, f"{settings.client_id}-{i}"))
            for i in range(size)
        ]
        self._next = itertools.cycle(self.links)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        user_properties: list[tuple[str, str]],
        timeout: float,
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = user_properties
        await next(self._next).publish(topic, payload, qos, retain, props, timeout)

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links))


def _with_client_id(s: LinkSettings, client_id: str) -> LinkSettings:
    return LinkSettings(
        s.host,
        s.port,
        s.tls,
        s.username,
        s.password,
        client_id,
        s.connect_timeout_s,
        s.reconnect_backoff_s,
    )
