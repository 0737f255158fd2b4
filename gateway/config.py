"""The gateway's configuration: a TOML file loaded into frozen sections.

Every key is documented, with its default, in ``config/README.md``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from gateway.audit.config import AuditConfig
from gateway.auth.config import AuthConfig
from gateway.auth.service_accounts import ServiceAccountConfig
from gateway.configload import ConfigError, dump_dataclass, load_dataclass, secret
from gateway.fleet.config import FleetConfig
from gateway.protection.config import ProtectionConfig
from gateway.rest.config import RestConfig

# MQTT 5 spec 2.1.4: the remaining length is at most 268,435,455 bytes. 1 MiB plus
# headers is the default because browsers and agents send small messages and a large
# limit multiplies the memory a slow client can pin.
DEFAULT_MAX_PACKET_SIZE = 1024 * 1024 + 1024


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """``[listener]``: the client-facing WebSocket Secure listener."""

    host: str = "127.0.0.1"
    port: int = 8883
    path: str = "/mqtt"
    certfile: str = "certs/server.pem"
    keyfile: str = "certs/server.key"
    allowed_origins: tuple[str, ...] = ()

    def validate(self) -> tuple[str, str] | None:
        if not 0 <= self.port <= 65535:
            return ("port", f"must be between 0 and 65535, got {self.port}")
        if not self.path.startswith("/"):
            return ("path", f"must start with '/', got {self.path!r}")
        for i, origin in enumerate(self.allowed_origins):
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                return (f"allowed_origins[{i}]", f"expected scheme://host[:port], got {origin!r}")
        return None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """``[upstream]``: the broker the gateway relays to."""

    url: str = "mqtt://127.0.0.1:1883"
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    connect_timeout_s: float = 5.0

    def validate(self) -> tuple[str, str] | None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            return ("url", f"expected mqtt://host:port or mqtts://host:port, got {self.url!r}")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return ("url", f"bad port in {self.url!r}")
        if self.password_env and self.password_file:
            return ("password_env", "set password_env or password_file, not both")
        if self.connect_timeout_s <= 0:
            return ("connect_timeout_s", "must be positive")
        return None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: bounds on what one client and the whole gateway may hold."""

    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    connect_timeout_s: float = 10.0
    max_connections: int = 10000
    # A relay pauses reading from the fast side while the slow side holds more than
    # this many bytes unsent; 256 KiB keeps a few hundred small messages in flight
    # per connection without letting one slow reader pin megabytes.
    write_buffer_high: int = 256 * 1024
    shutdown_grace_s: float = 5.0
    # One address may hold this many connections (a NAT of browsers needs many; a
    # single attacker needs to be stopped well before max_connections).
    max_connections_per_address: int = 1000
    # Topics longer or deeper than these are refused (v5 PUBACK 0x90 / SUBACK 0x8F): the
    # policy index and the broker's topic tree grow with them.
    max_topic_length: int = 1024
    max_topic_levels: int = 32
    max_subscriptions: int = 256
    # MQTT 5 Receive Maximum announced to clients and enforced for every version: the
    # QoS 1/2 publishes a client may have unacknowledged (spec 3.3.4).
    receive_maximum: int = 100
    # Clients asking for no keep-alive, or a longer one, get this (v5 Server Keep Alive);
    # 1.5 times the keep-alive without a packet ends the connection (spec 3.1.2.10).
    max_keep_alive_s: int = 3600
    # Per connection; 0 is off. Past them: v5 DISCONNECT 0x96 / 0x97, v3.1.1 close.
    max_messages_per_s: float = 0.0
    max_bytes_per_s: float = 0.0
    # After the connection count has fallen this far below its peak (and stayed there a
    # few seconds) freed heap memory goes back to the OS (glibc malloc_trim, in
    # gateway/server/memory_return.py); 0 is off. 100: a thousand TLS connections leave
    # about 35 MiB of free heap behind, a hundred about a tenth of it.
    memory_return_after_drop: int = 100

    def validate(self) -> tuple[str, str] | None:
        # MQTT 5 spec 3.1.2.24: Maximum Packet Size is a four byte integer, and the
        # remaining length (2.1.4) can describe at most 268,435,455 + 5 bytes.
        if not 16 <= self.max_packet_size <= 268_435_460:
            return ("max_packet_size", "must be between 16 and 268435460")
        if self.connect_timeout_s <= 0:
            return ("connect_timeout_s", "must be positive")
        if self.max_connections < 1:
            return ("max_connections", "must be at least 1")
        if self.write_buffer_high < 1024:
            return ("write_buffer_high", "must be at least 1024")
        if not 1 <= self.receive_maximum <= 65535:
            return ("receive_maximum", "must be between 1 and 65535")
        if not 0 <= self.max_keep_alive_s <= 65535:
            return ("max_keep_alive_s", "must be between 0 and 65535")
        for key in (
            "max_topic_length",
            "max_topic_levels",
            "max_subscriptions",
            "max_connections_per_address",
        ):
            if getattr(self, key) < 1:
                return (key, "must be at least 1")
        if self.memory_return_after_drop < 0:
            return ("memory_return_after_drop", "must not be negative")
        if self.max_messages_per_s < 0 or self.max_bytes_per_s < 0:
            return ("max_messages_per_s", "rates must not be negative")
        return None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: health, readiness, metrics and the admin API."""

    host: str = "127.0.0.1"
    port: int = 8081
    enabled: bool = True
    # The admin API accepts a static token (from env or file) and/or a JWT from a
    # configured issuer whose ``role`` binding holds this value.
    token_env: str | None = None
    token_file: str | None = None
    role: str | None = None

    def validate(self) -> tuple[str, str] | None:
        if self.token_env and self.token_file:
            return ("token_env", "set token_env or token_file, not both")
        return None


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``: structured logs, one JSON object per line on stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class AclConfig:
    """``[acl]``: the topic policy enforced on every CONNECT, PUBLISH and SUBSCRIBE."""

    policy: str = "config/policy.json"
    # v3.1.1 has no reason code for a refused PUBLISH (issue 5, item 2).
    on_publish_deny: Literal["ack", "disconnect"] = "ack"
    # Reload when the file changes; checked every watch_interval_s (a stat, no inotify
    # dependency: policies change rarely and a two-second delay is fine).
    watch: bool = True
    watch_interval_s: float = 2.0
    # MQTT v5 topic aliases a client may use (spec 3.2.2.3.8), held by the gateway.
    topic_alias_maximum: int = 64

    def validate(self) -> tuple[str, str] | None:
        if self.watch_interval_s <= 0:
            return ("watch_interval_s", "must be positive")
        if not 0 <= self.topic_alias_maximum <= 65535:
            return ("topic_alias_maximum", "must be between 0 and 65535")
        return None


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """``[tenancy.orgs.NAME]``: one organization's own settings."""

    # The org's policy file; else ``policies_dir/NAME.json`` if present; else [acl] policy.
    policy: str | None = None
    # The ``iss`` values accepted for this org; empty: every configured issuer.
    issuers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TenancyConfig:
    """``[tenancy]``: organization isolation (issue 6, item 1)."""

    enabled: bool = False
    # The binding that names a session's org (a token without a usable one is refused).
    binding: str = "org"
    # Every topic of org X is under this prefix upstream ({org} is replaced).
    mount: str = "org/{org}/"
    policies_dir: str | None = None
    known_orgs_only: bool = False
    orgs: dict[str, OrgConfig] = field(default_factory=dict)

    def validate(self) -> tuple[str, str] | None:
        if "{org}" not in self.mount:
            return ("mount", "must contain {org}")
        rest = self.mount.replace("{org}", "x")
        if rest.startswith("$") or any(c in rest for c in "+#\x00") or rest.startswith("/"):
            return ("mount", "must be plain topic levels: no wildcards, no leading '$' or '/'")
        return None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    acl: AclConfig = field(default_factory=AclConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    tenancy: TenancyConfig = field(default_factory=TenancyConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    service_accounts: tuple[ServiceAccountConfig, ...] = ()
    rest: RestConfig = field(default_factory=RestConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    # Relative paths in the file are relative to the working directory the gateway
    # starts in (as in the container image: WORKDIR /app, config/ and certs/ beside).
    base_dir: str = field(default=".", metadata={"internal": True})

    def path(self, p: str) -> Path:
        """A path from the configuration, relative to the working directory."""
        q = Path(p)
        return q if q.is_absolute() else Path(self.base_dir) / q


def read_secret(
    env: str | None, file: str | None, base: Path, where: str, cfg_file: str
) -> str | None:
    """A secret from an environment variable or a file; a named but missing one is an error."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(cfg_file, where, f"environment variable {env} is not set")
        return value
    if file:
        p = Path(file) if Path(file).is_absolute() else base / file
        try:
            return p.read_text().strip()
        except OSError as exc:
            raise ConfigError(cfg_file, where, f"cannot read {p}: {exc.strerror}") from None
    return None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a configuration file; raises ConfigError naming the key."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    if "base_dir" in table:
        raise ConfigError(file, "base_dir", "unknown key")
    config = load_dataclass(GatewayConfig, table, file)
    up = config.upstream
    read_secret(
        up.password_env, up.password_file, Path(config.base_dir), "upstream.password_env", file
    )
    return config


def effective_config(config: GatewayConfig) -> dict[str, object]:
    """The configuration as data for ``config check``, secrets masked."""
    data = dump_dataclass(config, frozenset({"password", "secret", "token"}))
    assert isinstance(data, dict)
    data.pop("base_dir", None)
    return data


__all__ = [
    "AclConfig",
    "AdminConfig",
    "ConfigError",
    "GatewayConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LoggingConfig",
    "UpstreamConfig",
    "effective_config",
    "load_config",
    "read_secret",
    "secret",
]
