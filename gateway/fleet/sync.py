"""Every gateway instance follows the signed policy on the control topic (issue 6, item 4).

The instance subscribes (aiomqtt, MQTT 5.0, QoS 1) to the retained control topic, so it
gets the current policy at every (re)connect and each update as it is published. An
envelope is applied only if it verifies against a trusted Ed25519 key, holds a valid
policy whose content version is the one signed, and is not older than the one in force
(a replayed old envelope is refused as ``stale``), also across a restart: with
``persist``, the newest accepted envelope's time and version are kept beside the policy
file (``<acl.policy>.fleet.json``), and an envelope older than that is refused even when
it is the one retained on the control topic at start. Applying goes through
``Gateway.activate_policy``, so live subscriptions the new policy refuses are revoked.
Every accepted or refused envelope is an audit decision with action ``policy_update``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.acl import Policy, PolicyError
from gateway.audit import DecisionRecord
from gateway.config import read_secret
from gateway.fleet.config import FleetConfig
from gateway.fleet.envelope import (
    EnvelopeRefused,
    SignedPolicy,
    key_id,
    load_public_key,
    verify_envelope,
)
from gateway.identity import is_usable_value
from gateway.logs import log
from gateway.server.tenancy import TenantRefused

if TYPE_CHECKING:
    from gateway.server.app import Gateway

logger = logging.getLogger("mqttgate.fleet")

AUDIT_ACTION = "policy_update"
INVALID_POLICY = "invalid_policy"
VERSION_MISMATCH = "version_mismatch"
STALE = "stale"
ORG_MISMATCH = "org_mismatch"
BAD_ORG = "bad_org"
# Orgs' own policies are on <control topic>/orgs/<org>.
ORGS_LEVEL = "orgs"


def _payload_bytes(payload: object) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode("utf-8")


class FleetPolicySync:
    """Subscribes to the control topic and applies what verifies."""

    def __init__(self, gateway: Gateway, config: FleetConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.trusted: dict[str, Ed25519PublicKey] = {}
        for name in config.public_key_files:
            public = load_public_key(gateway.config.path(name))
            self.trusted[key_id(public)] = public
        instance = config.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.client_id = f"{config.client_id_prefix}{instance}"
        up = gateway.config.upstream
        if config.password_env or config.password_file:
            self._password = read_secret(
                config.password_env,
                config.password_file,
                Path(gateway.config.base_dir),
                "fleet.password_env",
                "config",
            )
        else:
            pw = gateway.upstream_password
            self._password = pw.decode("utf-8") if pw is not None else None
        self._username = config.username if config.username is not None else up.username
        self.active: SignedPolicy | None = None
        # Orgs' own policies from the fleet ([tenancy]), on <control topic>/orgs/<org>.
        self.org_active: dict[str, SignedPolicy] = {}
        self.orgs_filter = f"{config.control_topic}/{ORGS_LEVEL}/+"
        # The newest envelope accepted, by org (None: the default policy), kept across
        # restarts in the state file: an older one is refused even at start.
        self.state_path: Path | None = (
            Path(f"{gateway.policy_path}.fleet.json") if config.persist else None
        )
        self.floors: dict[str | None, SignedPolicy] = self._read_floors()
        self.last_update: float | None = None
        self.last_error: str | None = None
        self.connected = False
        self.applied = 0
        self.refused = 0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-policy-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected = False

    async def _run(self) -> None:
        up = self.gateway.config.upstream
        while True:
            try:
                async with aiomqtt.Client(
                    up.host,
                    up.port,
                    username=self._username,
                    password=self._password,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    tls_context=self.gateway.upstream_ssl,
                    timeout=self.config.connect_timeout_s,
                    clean_start=True,
                ) as client:
                    await client.subscribe(self.config.control_topic, qos=1)
                    if self.gateway.tenants is not None:
                        await client.subscribe(self.orgs_filter, qos=1)
                    self.connected = True
                    async for message in client.messages:
                        await self.handle(_payload_bytes(message.payload), message.topic.value)
            except aiomqtt.MqttError as exc:
                self.last_error = f"broker: {exc}"
            except OSError as exc:
                self.last_error = f"broker: {exc.strerror or exc}"
            self.connected = False
            await asyncio.sleep(self.config.reconnect_s)

    # -- one envelope ---------------------------------------------------------------

    def org_of(self, topic: str | None) -> str | None:
        """The org an envelope's topic is for: None for the control topic itself."""
        if topic is None or topic == self.config.control_topic:
            return None
        return topic[len(self.orgs_filter) - 1 :]

    async def handle(self, data: bytes, topic: str | None = None) -> bool:
        """Verify and apply one control-topic message (``topic``: where it came from, the
        control topic when None); True when it is in force after."""
        if not data:
            return False  # the retained policy was cleared: keep what is in force
        from gateway.server.admin_api import policy_from_text

        org = self.org_of(topic)
        try:
            signed = verify_envelope(
                data, self.trusted, now=time.time(), max_skew_s=self.config.max_clock_skew_s
            )
        except EnvelopeRefused as exc:
            self._refuse(exc.reason, str(exc), None, org)
            return False
        if signed.org != org:
            # Signed for another org (or for the default policy) than its topic says.
            self._refuse(ORG_MISMATCH, "signed for another org than its topic", signed, org)
            return False
        if org is not None and (self.gateway.tenants is None or not is_usable_value(org)):
            self._refuse(BAD_ORG, "not an org of this gateway", signed, org)
            return False
        active = self.active if org is None else self.org_active.get(org)
        if active is not None and signed.version == active.version:
            return True  # the retained copy again, after a reconnect
        if active is not None and signed.issued_at < active.issued_at:
            self._refuse(STALE, "older than the policy in force", signed, org)
            return False
        floor = self.floors.get(org)
        if active is None and floor is not None and signed.issued_at < floor.issued_at:
            self._refuse(STALE, "older than the policy accepted before the restart", signed, org)
            return False
        try:
            policy = policy_from_text(signed.text, f"fleet:{signed.key_id}")
        except PolicyError as exc:
            self._refuse(INVALID_POLICY, str(exc).splitlines()[0], signed, org)
            return False
        if policy.version != signed.version:
            self._refuse(VERSION_MISMATCH, "content does not have the signed version", signed, org)
            return False
        revoked = await self._apply(org, policy, signed)
        if org is None:
            self.active = signed
        else:
            self.org_active[org] = signed
        self._write_floor(org, signed)
        self.last_update = time.time()
        self.last_error = None
        self.applied += 1
        self._audit("allow", "signed", signed, org)
        log(
            logger,
            logging.INFO,
            "fleet policy applied",
            org=org,
            version=signed.version,
            key_id=signed.key_id,
            revoked=revoked,
        )
        return True

    async def _apply(self, org: str | None, policy: Policy, signed: SignedPolicy) -> int:
        """Put the policy in force; the subscriptions it revoked."""
        gateway = self.gateway
        if org is None:
            if policy.version == gateway.policy.version:
                return 0
            return await gateway.activate_policy(
                policy, signed.text, cause=f"fleet:{signed.key_id}", persist=self.config.persist
            )
        tenants = gateway.tenants
        assert tenants is not None
        try:
            current = tenants.policy_for(org)
        except TenantRefused:
            current = None  # its file was broken: the fleet's policy replaces it
        try:
            tenants.install(org, policy, signed.text, persist=self.config.persist)
        except OSError as exc:
            # In force all the same; a restart reads the old file until the retained
            # envelope arrives again.
            log(logger, logging.ERROR, "org policy not written", org=org, error=str(exc))
            tenants.install(org, policy, signed.text, persist=False)
        if current is not None and current.version == policy.version:
            return 0
        return await gateway.activate_org_policy(org, policy)

    def _read_floors(self) -> dict[str | None, SignedPolicy]:
        """The state file: {"default": {...}, "orgs": {org: {...}}}, each the newest
        envelope accepted (issued_at, version, key_id; the policy text is not kept)."""
        path = self.state_path
        if path is None or not path.exists():
            return {}
        try:
            state = orjson.loads(path.read_bytes())
            floors: dict[str | None, SignedPolicy] = {}
            entries = [(None, state.get("default"))]
            entries += [(o, e) for o, e in dict(state.get("orgs") or {}).items()]
            for org, e in entries:
                if e is not None:
                    floors[org] = SignedPolicy(
                        "", str(e["version"]), float(e["issued_at"]), str(e["key_id"]), org
                    )
            return floors
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable: the first verified envelope is taken, as on a first start.
            log(logger, logging.ERROR, "fleet state unreadable", path=str(path), error=str(exc))
            return {}

    def _write_floor(self, org: str | None, signed: SignedPolicy) -> None:
        self.floors[org] = signed
        path = self.state_path
        if path is None:
            return
        from gateway.server.admin_api import write_atomically

        def entry(p: SignedPolicy) -> dict[str, object]:
            return {"issued_at": p.issued_at, "version": p.version, "key_id": p.key_id}

        state = {
            "default": entry(self.floors[None]) if None in self.floors else None,
            "orgs": {o: entry(p) for o, p in self.floors.items() if o is not None},
        }
        try:
            write_atomically(path, orjson.dumps(state).decode())
        except OSError as exc:
            log(logger, logging.ERROR, "fleet state not written", path=str(path), error=str(exc))

    def _refuse(
        self, reason: str, detail: str, signed: SignedPolicy | None, org: str | None = None
    ) -> None:
        self.refused += 1
        self.last_error = f"{reason}: {detail}"
        self._audit("deny", reason, signed, org)
        log(logger, logging.WARNING, "fleet policy refused", reason=reason, detail=detail, org=org)

    def _audit(
        self, verdict: str, reason: str, signed: SignedPolicy | None, org: str | None = None
    ) -> None:
        topic = self.config.control_topic
        self.gateway.audit_pipeline.decision(
            DecisionRecord(
                action=AUDIT_ACTION,
                topic=topic if org is None else f"{topic}/{ORGS_LEVEL}/{org}",
                verdict="allow" if verdict == "allow" else "deny",
                reason=reason,
                policy_version=signed.version if signed is not None else None,
                client_id=self.client_id,
                connection_id=f"fleet:{signed.key_id}" if signed is not None else "fleet",
            )
        )

    # -- reporting ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /readyz: what the fleet put in force, and the last problem."""
        active = self.active
        return {
            "connected": self.connected,
            "control_topic": self.config.control_topic,
            "active_version": active.version if active else None,
            "issued_at": active.issued_at if active else None,
            "key_id": active.key_id if active else None,
            "last_update": self.last_update,
            "last_error": self.last_error,
            "applied": self.applied,
            "refused": self.refused,
            "orgs": {org: p.version for org, p in sorted(self.org_active.items())},
        }

    def prometheus_text(self) -> str:
        """Lines to append to /metrics (Prometheus text format 0.0.4)."""
        active = self.active
        lines = [
            "# HELP mqttgate_fleet_connected Whether the control-topic subscription is up.",
            "# TYPE mqttgate_fleet_connected gauge",
            f"mqttgate_fleet_connected {int(self.connected)}",
            "# HELP mqttgate_fleet_policy_updates_total Control-topic envelopes by outcome.",
            "# TYPE mqttgate_fleet_policy_updates_total counter",
            f'mqttgate_fleet_policy_updates_total{{outcome="applied"}} {self.applied}',
            f'mqttgate_fleet_policy_updates_total{{outcome="refused"}} {self.refused}',
            "# HELP mqttgate_fleet_policy_info The policy version applied from the fleet.",
            "# TYPE mqttgate_fleet_policy_info gauge",
        ]
        if active is not None:
            lines.append(
                f'mqttgate_fleet_policy_info{{version="{active.version}",'
                f'key_id="{active.key_id}"}} 1'
            )
        return "\n".join(lines) + "\n"
