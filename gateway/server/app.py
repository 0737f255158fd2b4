"""The gateway process: the WSS listener, the admin listener, signals and lifecycle."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import ssl
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import __version__, logs
from gateway.acl import Policy, PolicyError, load_policy
from gateway.audit import AuditPipeline, ConnectionRecord, DecisionRecord
from gateway.config import ConfigError, GatewayConfig, read_secret
from gateway.core.outputs import AuditEvent
from gateway.identity import identity_user_id
from gateway.logs import log
from gateway.server.admin_api import policy_from_text
from gateway.server.appkeys import GATEWAY_KEY
from gateway.server.authn import ConnectAuthenticator
from gateway.server.connection import ClientConnection
from gateway.server.decision_stream import DecisionStream
from gateway.server.memory_return import MemoryReturn, glibc_malloc_trim
from gateway.server.tenancy import TenantPolicies
from gateway.server.tls_transport import tune_asyncio_tls
from gateway.server.websocket import websocket_handler
from gateway.server.workers import WorkerRole, role_from_env

if TYPE_CHECKING:
    from gateway.fleet.sync import FleetPolicySync
    from gateway.protection.publish import DataProtection
    from gateway.protection.sweeper import RetentionSweeper
    from gateway.rest import RestBridge
from gateway.tls import reload_cert_chain, server_context, upstream_context

logger = logging.getLogger("mqttgate")


class Gateway:
    """Owns the listeners and the live connections of one gateway process."""

    def __init__(
        self,
        config: GatewayConfig,
        authenticator: ConnectAuthenticator,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.policy_path = config.path(config.acl.policy)
        # A policy that cannot be loaded at start-up stops the gateway (PolicyError).
        self.policy_text: str | None = _read_text(self.policy_path)
        self.policy: Policy = policy if policy is not None else load_policy(self.policy_path)
        self.previous_policy: Policy | None = None
        self.previous_policy_text: str | None = None
        self._policy_mtime = _mtime(self.policy_path)
        self._watch_task: asyncio.Task[None] | None = None
        secret = read_secret(
            config.upstream.password_env,
            config.upstream.password_file,
            Path(config.base_dir),
            "upstream.password_env",
            "config",
        )
        self.upstream_password = secret.encode() if secret is not None else None
        self.upstream_ssl: ssl.SSLContext | None = None
        if config.upstream.tls:
            self.upstream_ssl = upstream_context(
                str(config.path(config.upstream.cafile)) if config.upstream.cafile else None,
                str(config.path(config.upstream.certfile)) if config.upstream.certfile else None,
                str(config.path(config.upstream.keyfile)) if config.upstream.keyfile else None,
            )
        self.ssl_context = server_context(
            str(config.path(config.listener.certfile)), str(config.path(config.listener.keyfile))
        )
        self.connections: set[ClientConnection] = set()
        self.per_address: collections.Counter[str] = collections.Counter()
        self.audit_pipeline = AuditPipeline(config.audit)
        self.decision_stream = DecisionStream(on_change=self.viewers_changed)
        self.role: WorkerRole | None = role_from_env()
        self.protection: DataProtection = _build_protection(config)
        from gateway.fleet.control import control_topic_predicate

        # Always on, fleet or not: it also guards the gateway's whole $mqttgate namespace.
        predicate = control_topic_predicate(config.fleet.control_topic)
        if config.fleet.control_topic.startswith("$"):
            # Only a topic or filter that itself starts with "$" can reach a "$" topic
            # (MQTT 4.7.2: wildcards in the first level never match one): a cheap test
            # first keeps the full check off the path of every ordinary PUBLISH.
            self.is_control_topic = lambda t: t[:1] == "$" and predicate(t)
        else:
            self.is_control_topic = predicate
        self.rest: RestBridge | None = None
        if config.rest.enabled:
            from gateway.rest import RestBridge

            self.rest = RestBridge(self, config.rest)
        self.fleet: FleetPolicySync | None = None
        if config.fleet.enabled:
            from gateway.fleet.sync import FleetPolicySync

            self.fleet = FleetPolicySync(self, config.fleet)
        self.sweeper = _build_sweeper(config, self.upstream_password, self.upstream_ssl)
        self._sweeper_started = False
        self.tenants = TenantPolicies(config) if config.tenancy.enabled else None
        self.accepting = True
        self.upstream_ok: bool | None = None
        self.certs_loaded_at = time.time()
        # Freed heap memory back to the OS after many connections left (bench/README.md
        # "Soak"): polled, never on the data path.
        self.memory_return = MemoryReturn(
            lambda: len(self.connections),
            config.limits.memory_return_after_drop,
            glibc_malloc_trim(),
        )
        self._runners: list[web.AppRunner] = []
        self.port: int | None = None
        self.admin_port: int | None = None

    # -- state shared with connections -------------------------------------------

    def note_upstream(self, ok: bool) -> None:
        self.upstream_ok = ok

    async def sweeper_for_rules(self) -> RetentionSweeper:
        """The retention sweeper, started the first time a policy rule's TTL needs it."""
        if self.sweeper is None:
            self.sweeper = _build_sweeper(
                self.config, self.upstream_password, self.upstream_ssl, now=True
            )
            assert self.sweeper is not None
        if not self._sweeper_started:
            self._sweeper_started = True
            await self.sweeper.start()
        return self.sweeper

    def upgrade_refused(self, reason: str, remote: str | None) -> None:
        """A token on the WebSocket upgrade was refused (HTTP 401/429/503): audited and
        counted like a refused CONNECT, so a brute force through headers shows."""
        self.audit_pipeline.metrics.auth_failure(reason)
        self.audit_pipeline.connection(
            ConnectionRecord(outcome="deny", reason=reason, client_address=remote, kind="upgrade")
        )

    def allow_events_wanted(self) -> bool:
        """Whether sessions must report allowed decisions one by one as events (a live
        viewer sees each with its identity); the audit log alone takes them from each
        session's ledger (``Session.allow_ledger``)."""
        return bool(self.decision_stream.viewers)

    def allow_sample_ratio(self) -> float:
        """The share of (otherwise only counted) allows sessions report, for sampled spans."""
        return self.audit_pipeline.session_sample_ratio

    def viewers_changed(self) -> None:
        quiet = not self.allow_events_wanted()
        for conn in self.connections:
            conn.session.quiet_allows = quiet

    def audit(self, conn: ClientConnection, event: AuditEvent) -> None:
        """One session event to the audit pipeline (spans, log, metrics) and, for
        denies, to the operational log."""
        a = event.attributes
        identity = conn.session.identity
        user_id = identity_user_id(identity)
        if self.decision_stream.viewers:
            self.decision_stream.publish(
                {
                    "ts": time.time(),
                    "kind": event.kind,
                    "verdict": event.verdict,
                    "reason": event.reason,
                    "client_id": conn.session.client_id,
                    "user_id": user_id,
                    "identity": identity.as_dict() if identity is not None else None,
                    "client_address": conn.transport.remote_address,
                    "session": conn.id,
                    "worker": self.role.index if self.role is not None else 0,
                    **{k: a.get(k) for k in STREAM_FIELDS if k in a},
                }
            )
        if event.kind in DECISION_KINDS:
            self.audit_pipeline.decision(
                DecisionRecord(
                    action=event.kind,
                    topic=str(a.get("topic", "")),
                    verdict="allow" if event.verdict == "allow" else "deny",
                    reason=event.reason,
                    qos=_int(a.get("qos")),
                    retain=bool(a.get("retain")),
                    rule_id=_str(a.get("rule_id")),
                    pattern=_str(a.get("pattern")),
                    policy_version=_str(a.get("policy_version")),
                    decision_ns=_int(a.get("decision_ns")) or 0,
                    client_id=conn.session.client_id,
                    user_id=user_id,
                    client_address=conn.transport.remote_address,
                    granted_qos=_int(a.get("granted_qos")),
                    connection_id=conn.id,
                ),
                sampled=event.sampled,
            )
            if event.kind == "revoke":
                self.audit_pipeline.metrics.revocation()
        elif event.verdict != "info" or event.kind == "connect":
            self.audit_pipeline.connection(
                ConnectionRecord(
                    outcome="allow" if event.verdict == "allow" else "deny",
                    reason=event.reason,
                    client_id=conn.session.client_id,
                    user_id=user_id,
                    identity=identity.as_dict() if identity is not None else {},
                    issuer=identity.issuer if identity is not None else None,
                    client_address=conn.transport.remote_address,
                    tls_version=(conn.transport.tls_version or "").removeprefix("TLSv") or None,
                    protocol_level=conn.session.protocol_level,
                    kind=event.kind,
                    connection_id=conn.id,
                )
            )
            if event.kind in ("connect", "reauth") and event.verdict == "deny":
                self.audit_pipeline.metrics.auth_failure(event.reason)
        if event.verdict == "deny":
            log(
                logger,
                logging.INFO,
                "deny",
                kind=event.kind,
                reason=event.reason,
                client_address=conn.transport.remote_address,
                client_id=conn.session.client_id,
                topic=a.get("topic"),
                rule_id=a.get("rule_id"),
            )

    # -- listeners ---------------------------------------------------------------

    def client_app(self) -> web.Application:
        app = web.Application(client_max_size=1024)
        app[GATEWAY_KEY] = self
        app.router.add_get(self.config.listener.path, websocket_handler)
        if self.rest is not None and self.config.rest.listener == "client":
            self.rest.add_routes(app)
        return app

    def admin_app(self) -> web.Application:
        from gateway.server.admin import add_admin_routes
        from gateway.server.admin_api import add_admin_api
        from gateway.server.admin_pages import add_admin_pages

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app[GATEWAY_KEY] = self
        add_admin_routes(app)
        add_admin_api(app, self)
        if self.rest is not None and self.config.rest.listener == "admin":
            self.rest.add_routes(app)
        add_admin_pages(app, self)
        return app

    # -- policy ------------------------------------------------------------------

    async def activate_policy(
        self, policy: Policy, text: str | None, *, cause: str, persist: bool = False
    ) -> int:
        """Swap the policy atomically; live subscriptions it refuses are revoked.

        With ``persist`` the text is written to the policy file too (atomically), so a
        restart, SIGHUP or file watch keeps what the admin API put in force. Returns the
        number of subscriptions revoked.
        """
        if persist and text is not None:
            from gateway.server.admin_api import write_atomically

            write_atomically(self.policy_path, text)
            self._policy_mtime = _mtime(self.policy_path)
        self.previous_policy, self.policy = self.policy, policy
        self.previous_policy_text, self.policy_text = self.policy_text, text
        revoked = 0
        for conn in list(self.connections):
            if self.tenants is not None and self.tenants.has_own_policy(conn.org):
                continue  # this org has its own policy
            revoked += await conn.policy_changed(policy)
        log(
            logger,
            logging.INFO,
            "policy activated",
            version=policy.version,
            cause=cause,
            rules=len(policy.rules),
            revoked=revoked,
        )
        return revoked

    async def reload_policy(self, cause: str) -> int | None:
        """Load the policy file again; a bad file keeps the active policy (and says why).
        The number of subscriptions the new policy revoked (0 when it is the policy in
        force already), or None when the file could not be used."""
        self._policy_mtime = _mtime(self.policy_path)
        text = _read_text(self.policy_path)
        try:
            if text is None:
                raise OSError(f"cannot read {self.policy_path}")
            # Off the event loop: a large policy compiles for seconds; traffic goes on.
            policy = await asyncio.to_thread(policy_from_text, text, str(self.policy_path))
        except (PolicyError, OSError) as exc:
            log(
                logger,
                logging.ERROR,
                "policy reload failed; keeping the active policy",
                error=str(exc),
                cause=cause,
            )
            # Audited too: a policy change that did not happen is a compliance event.
            self.audit_pipeline.decision(
                DecisionRecord(
                    action="policy_reload",
                    topic=str(self.policy_path),
                    verdict="deny",
                    reason="policy_invalid",
                    policy_version=self.policy.version,
                    client_id=cause,
                )
            )
            return None
        if policy.version != self.policy.version:
            return await self.activate_policy(policy, text, cause=cause)
        return 0

    async def _watch_policy(self) -> None:
        while True:
            await asyncio.sleep(self.config.acl.watch_interval_s)
            mtime = _mtime(self.policy_path)
            if mtime != self._policy_mtime:
                await self.reload_policy("file_changed")
            if self.tenants is not None:
                for org, policy in self.tenants.changed().items():
                    await self.activate_org_policy(org, policy)

    async def activate_org_policy(self, org: str, policy: Policy) -> int:
        """An org's own policy changed: its sessions get it (and its revocations)."""
        revoked = 0
        for conn in list(self.connections):
            if conn.org == org:
                revoked += await conn.policy_changed(policy)
        log(
            logger,
            logging.INFO,
            "org policy activated",
            org=org,
            version=policy.version,
            revoked=revoked,
        )
        return revoked

    async def start(self) -> None:
        tune_asyncio_tls()
        self.audit_pipeline.start()
        await self.authenticator.start()
        if self.sweeper is not None:
            await self.sweeper.start()
            self._sweeper_started = True
        if self.rest is not None:
            await self.rest.start()
        if self.fleet is not None:
            await self.fleet.start()
        if self.config.acl.watch:
            self._watch_task = asyncio.create_task(self._watch_policy())
        lst = self.config.listener
        runner = web.AppRunner(self.client_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner,
            lst.host,
            lst.port,
            ssl_context=self.ssl_context,
            backlog=1024,
            reuse_port=self.role is not None,
        )
        await site.start()
        self._runners.append(runner)
        self.port = _bound_port(site)
        if self.config.admin.enabled:
            adm = self.config.admin
            admin_runner = web.AppRunner(self.admin_app(), access_log=None, handle_signals=False)
            await admin_runner.setup()
            if self.role is None or self.role.leader:
                admin_site = web.TCPSite(admin_runner, adm.host, adm.port)
            else:
                # Followers' admin listeners are for the leader only: loopback.
                admin_site = web.TCPSite(admin_runner, "127.0.0.1", self.role.admin_port(adm.port))
            await admin_site.start()
            self._runners.append(admin_runner)
            self.admin_port = _bound_port(admin_site)
        self.memory_return.start()
        await self.probe_upstream()
        log(
            logger,
            logging.INFO,
            "listening",
            port=self.port,
            path=lst.path,
            admin_port=self.admin_port,
            version=__version__,
        )

    async def probe_upstream(self) -> bool:
        """Whether a TCP (or TLS) connection to the broker opens now, for /readyz."""
        up = self.config.upstream
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    up.host,
                    up.port,
                    ssl=self.upstream_ssl,
                    server_hostname=up.host if self.upstream_ssl else None,
                ),
                timeout=up.connect_timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            self.upstream_ok = False
            return False
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
        self.upstream_ok = True
        return True

    def reload_certificates(self) -> None:
        """SIGHUP: load the certificate and key again; open connections are untouched."""
        lst = self.config.listener
        try:
            reload_cert_chain(
                self.ssl_context,
                str(self.config.path(lst.certfile)),
                str(self.config.path(lst.keyfile)),
            )
        except (OSError, ssl.SSLError) as exc:
            log(
                logger,
                logging.ERROR,
                "certificate reload failed; keeping the old one",
                error=str(exc),
            )
            return
        self.certs_loaded_at = time.time()
        log(logger, logging.INFO, "certificates reloaded")

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, tell v5 clients the server is shutting down, close all."""
        self.accepting = False
        grace = self.config.limits.shutdown_grace_s if grace_s is None else grace_s
        if self._runners:
            # Stop listening first so no new client slips in during the drain.
            for site in list(self._runners[0].sites):
                await site.stop()
        conns = list(self.connections)
        if conns:
            await asyncio.wait([asyncio.create_task(c.shutdown()) for c in conns], timeout=grace)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await self.memory_return.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.rest is not None:
            await self.rest.stop()
        await self.authenticator.close()
        if self.sweeper is not None and self._sweeper_started:
            await self.sweeper.stop()
        # Last: every decision made during the drain is in the log and exported.
        await self.audit_pipeline.shutdown()

    def reload_keyring(self) -> bool:
        """SIGHUP: the data-protection keys are read again (after ``mqttgate keys rotate``
        or ``retire``); open sessions seal and open with them from their next packet. A
        keyring that cannot be read leaves the keys in force (and says why)."""
        from gateway.protection.keyring import load_keyring

        try:
            keyring = load_keyring(self.config.protection, self.config.base_dir, "[protection]")
        except (ConfigError, OSError) as exc:
            log(logger, logging.ERROR, "keyring reload failed; keeping the keys", error=str(exc))
            return False
        self.protection = self.protection.with_keyring(keyring)
        for conn in self.connections:
            conn.session.protection = self.protection
        log(logger, logging.INFO, "keyring reloaded")
        return True

    def on_sighup(self) -> None:
        """SIGHUP: certificates, the data-protection keyring and the policy are read again;
        connections stay."""
        self.reload_certificates()
        self.reload_keyring()
        asyncio.get_running_loop().create_task(self.reload_policy("sighup"))


# Decision attributes the live decisions view shows.
STREAM_FIELDS = ("topic", "qos", "retain", "rule_id", "pattern", "granted_qos", "policy_version")

# Session events that are authorization decisions (the rest are connection events).
DECISION_KINDS = frozenset({"publish", "subscribe", "delivery", "will", "revoke"})


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _bound_port(site: web.TCPSite) -> int:
    # asyncio's Server or uvloop's: both have ``sockets``.
    server: Any = site._server
    sock: Any = server.sockets[0]
    port = sock.getsockname()[1]
    assert isinstance(port, int)
    return port


async def run_until_signalled(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.on_sighup)
    await gateway.start()
    await stop.wait()
    log(logger, logging.INFO, "shutting down", connections=len(gateway.connections))
    await gateway.stop()


def _build_protection(config: GatewayConfig) -> DataProtection:
    """Encryption and retention (issue 10). Always built: a policy rule may set a
    retained TTL at any time; with nothing configured a PUBLISH costs one cached lookup."""
    prot = config.protection
    from gateway.protection.keyring import load_keyring
    from gateway.protection.publish import DataProtection

    return DataProtection(prot, load_keyring(prot, config.base_dir, "[protection]"))


def _build_sweeper(
    config: GatewayConfig, password: bytes | None, tls: ssl.SSLContext | None, *, now: bool = False
) -> RetentionSweeper | None:
    """The retention sweeper clears expired retained messages as the gateway's own
    client (its upstream credentials). Built at start when [protection] sets TTLs, or
    (``now``) when a policy rule's TTL first needs it."""
    if not config.protection.retain and not now:
        return None
    from gateway.protection.broker import BrokerParams
    from gateway.protection.sweeper import RetentionSweeper

    up = config.upstream
    params = BrokerParams(
        host=up.host,
        port=up.port,
        username=up.username,
        password=password.decode() if password else None,
        tls_context=tls,
    )
    db = config.path(config.protection.sweeper_db)
    db.parent.mkdir(parents=True, exist_ok=True)
    return RetentionSweeper(db, params, interval_s=config.protection.sweep_interval_s)


def preflight(config: GatewayConfig) -> str | None:
    """What would stop a gateway from starting (policy, certificates, auth config), as
    one line; None when it would start. Builds the objects a worker builds, starts nothing."""
    from gateway.server.authn_factory import build_authenticator

    try:
        Gateway(config, build_authenticator(config)).audit_pipeline.shutdown_sync()
    except (ConfigError, PolicyError, OSError, ssl.SSLError, ValueError) as exc:
        return str(exc)
    return None


def serve(config: GatewayConfig, log_level: str | None = None) -> int:
    logs.configure(log_level or config.logging.level)
    from gateway.server.authn_factory import build_authenticator

    try:
        authenticator = build_authenticator(config)
        gateway = Gateway(config, authenticator)
    except (ConfigError, PolicyError, OSError, ssl.SSLError, ValueError) as exc:
        # Start-up errors are one line naming what is wrong, not a traceback.
        print(f"mqttgate: {exc}", file=sys.stderr)
        return 1
    _run(run_until_signalled(gateway))
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, on uvloop when it is installed (``pip install mqttgate[speed]``)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    log(logger, logging.INFO, "using uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
