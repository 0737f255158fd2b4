"""``[fleet]``: one signed policy for every gateway instance (issue 6, item 4)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.fleet.control import DEFAULT_CONTROL_TOPIC


@dataclass(frozen=True, slots=True)
class FleetConfig:
    enabled: bool = False
    # Retained, QoS 1. Clients can never reach it (gateway.fleet.control).
    control_topic: str = DEFAULT_CONTROL_TOPIC
    # Ed25519 public keys (PEM) whose signatures are accepted; several during rotation.
    public_key_files: tuple[str, ...] = ()
    # Write an accepted policy to [acl] policy too, so a restart starts from it even
    # before the broker is reachable.
    persist: bool = True
    # Broker credentials of the subscriber; default: [upstream] username and password.
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    client_id_prefix: str = "mqttgate-fleet-"
    instance: str | None = None
    connect_timeout_s: float = 5.0
    # Wait before reconnecting after the broker went away: short, because until it is
    # back an update published meanwhile is not seen (it is retained, so none is lost).
    reconnect_s: float = 2.0
    # An envelope issued further in the future than this is refused (clock skew bound).
    max_clock_skew_s: float = 300.0

    def validate(self) -> tuple[str, str] | None:
        t = self.control_topic
        if not t or any(c in t for c in "+#\x00") or t.startswith("$share/"):
            return ("control_topic", "must be a topic name: no wildcards, not $share")
        if self.enabled and not self.public_key_files:
            return ("public_key_files", "name at least one Ed25519 public key")
        if self.password_env and self.password_file:
            return ("password_env", "set password_env or password_file, not both")
        if self.connect_timeout_s <= 0 or self.reconnect_s <= 0:
            return ("connect_timeout_s", "timeouts must be positive")
        return None
