"""``[rest]``: the REST publish bridge's configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class RestConfig:
    """``[rest]`` (issue 6, item 3)."""

    enabled: bool = False
    # The client TLS listener is the natural home: same certificate, same exposure as
    # the WebSocket endpoint; "admin" puts it on the (loopback) admin listener instead.
    listener: Literal["client", "admin"] = "client"
    # 256 KiB: far above what a notification or command needs, and a request body is
    # held in memory whole while it is decided and published.
    max_payload_bytes: int = 256 * 1024
    # User properties a caller may add (MQTT 5.0 §3.3.2.3.7 allows any number; every
    # one rides along to every subscriber).
    max_user_properties: int = 32
    # The service account whose principal publishes for the bridge (issue 6, item 2).
    publisher: str = "rest_publisher"
    # The upstream client id is "<client_id_prefix><instance>"; instance defaults to the
    # host name and process id, so two gateway instances never take over each other.
    client_id_prefix: str = "mqttgate-rest-"
    instance: str | None = None
    # Broker credentials of the bridge; default: [upstream] username and password.
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # Pooled connections to the broker; requests are spread over them round robin.
    pool_size: int = 2
    connect_timeout_s: float = 5.0
    # How long a QoS 1/2 publish waits for the broker's PUBACK/PUBCOMP before 503.
    publish_timeout_s: float = 10.0
    # After a failed connect, requests answer 503 at once for this long instead of each
    # waiting out connect_timeout_s against a broker that is down.
    reconnect_backoff_s: float = 1.0

    def validate(self) -> tuple[str, str] | None:
        if not 1 <= self.max_payload_bytes <= 268_435_455:
            return ("max_payload_bytes", "must be between 1 and 268435455 (MQTT 5.0 §2.1.4)")
        if not 0 <= self.max_user_properties <= 1024:
            return ("max_user_properties", "must be between 0 and 1024")
        if not 1 <= self.pool_size <= 64:
            return ("pool_size", "must be between 1 and 64")
        if self.password_env and self.password_file:
            return ("password_env", "set password_env or password_file, not both")
        for key in ("connect_timeout_s", "publish_timeout_s"):
            if getattr(self, key) <= 0:
                return (key, "must be positive")
        if self.reconnect_backoff_s < 0:
            return ("reconnect_backoff_s", "must not be negative")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", self.publisher):
            return ("publisher", "must be a service account id")
        return None
