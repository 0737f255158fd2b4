"""The per-connection session: a sans-I/O state machine between a client and the broker.

It takes bytes from either side and returns a ``Step``: the bytes to send each way and
the actions the shell must carry out (authenticate, open the upstream, audit, close).
Packets the gateway does not change are forwarded as their original bytes.

States (explicit, as in h11's ``_state.py``)::

    AWAIT_CONNECT --CONNECT--> AUTHENTICATING --ok--> OPENING_UPSTREAM --connected-->
    AWAIT_CONNACK --CONNACK 0--> CONNECTED --DISCONNECT / error / close--> CLOSED

Nothing reaches the broker before authentication has succeeded: the upstream is
opened only in OPENING_UPSTREAM, and client packets that arrive early stay in the
decoder's buffer until CONNECTED.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from random import random as _random
from time import perf_counter_ns

from gateway.acl import Policy, PolicyDecision
from gateway.core.aliases import AliasError, TopicAliases
from gateway.core.knownpackets import KnownTopics, scan_known
from gateway.core.mount import TopicMount
from gateway.core.outputs import (
    AuditEvent,
    Authenticate,
    Close,
    LoggedAllow,
    OpenUpstream,
    Reauthenticate,
    RetainedCleared,
    RetainedStored,
    Step,
)
from gateway.core.ratelimit import TokenBucket
from gateway.core.subscriptions import (
    ActiveSubscription,
    PendingSubscribe,
    SubscriptionBook,
    share_group_of,
)
from gateway.identity import Identity
from gateway.mqtt.constants import MQTT_5, SUBACK_FAILURE_V3, ConnackV3, PropertyId, ReasonCode
from gateway.mqtt.decoder import PacketDecoder, RawPacket
from gateway.mqtt.encoder import encode
from gateway.mqtt.errors import MQTTError, PacketTooLarge, UnsupportedProtocolVersion
from gateway.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
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
from gateway.protection.protector import OpenFailure, SealFailure
from gateway.protection.publish import DataProtection

# The authentication method a v5 client names to carry its JWT in CONNECT's
# Authentication Data or to re-authenticate with AUTH 0x19 (MQTT 5 spec 4.12).
JWT_AUTH_METHOD = "jwt"

# MQTT 3.1 (protocol level 3, spec 3.1 section 3.1): client ids are 1 to 23 characters.
MQTT31_MAX_CLIENT_ID = 23

# Bytes a client may send after its CONNECT and before the CONNACK (MQTT 5 spec 3.1.4
# lets it) that the session holds unread; past that the client is flooding.
EARLY_DATA_SLACK = 64 * 1024

# MQTT 5 spec 3.14.2.1: the reason codes a DISCONNECT may carry.
DISCONNECT_REASON_CODES = frozenset(
    {
        0x00,
        0x04,
        0x80,
        0x81,
        0x82,
        0x83,
        0x87,
        0x89,
        0x8B,
        0x8D,
        0x8E,
        0x8F,
        0x90,
        0x93,
        0x94,
        0x95,
        0x96,
        0x97,
        0x98,
        0x99,
        0x9A,
        0x9B,
        0x9C,
        0x9D,
        0x9E,
        0x9F,
        0xA0,
        0xA1,
        0xA2,
    }
)

# Decisions a session remembers (core/session.py _decisions): enough for the hot topics
# of any client; a client cycling through more topics just pays the policy's own cache.
DECISION_CACHE_SIZE = 1024

# MQTT 5 spec 3.1.2.10: Keep Alive is a Two Byte Integer.
KEEP_ALIVE_MAX = 65535

# Enough of a CONNECT to read its protocol level: fixed header (5) + name (2 + 6) + 1.
CONNECT_HEAD_BYTES = 16

# WebSocket close codes, RFC 6455 section 7.4.1.
WS_NORMAL = 1000
WS_PROTOCOL_ERROR = 1002
WS_POLICY_VIOLATION = 1008
WS_MESSAGE_TOO_BIG = 1009
WS_INTERNAL_ERROR = 1011

# Packets only a server sends (MQTT 5 spec 2.1.2 "Direction of flow").
_SERVER_ONLY = (Connack, Suback, Unsuback)
# Packets only a client sends.
_CLIENT_ONLY = (Connect, Subscribe, Unsubscribe, Pingreq)


def _without_credentials(connect: Connect) -> Connect:
    """The client's CONNECT as the session keeps it once the broker has its own."""
    return dataclasses.replace(
        connect,
        password=None,
        will=None,
        properties=connect.properties.without(PropertyId.AUTHENTICATION_DATA),
    )


class SessionState(enum.Enum):
    AWAIT_CONNECT = "await_connect"
    AUTHENTICATING = "authenticating"
    OPENING_UPSTREAM = "opening_upstream"
    AWAIT_CONNACK = "await_connack"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    max_packet_size: int
    connect_timeout_s: float
    upstream_username: str | None = None
    upstream_password: bytes | None = None
    # v3.1.1 has no reason code for a refused PUBLISH: acknowledge it as if delivered
    # (what Mosquitto does) or disconnect (issue 5, item 2).
    on_publish_deny: str = "ack"
    # Aliases a v5 client may use towards the gateway (spec 3.2.2.3.8). The gateway holds
    # one map per client, so it is bounded: 64 covers the hot topics of any real client.
    topic_alias_maximum: int = 64
    # Resource limits (issue 9, item 3); 0 turns a rate limit off.
    max_topic_length: int = 1024
    max_topic_levels: int = 32
    max_subscriptions: int = 256
    receive_maximum: int = 100
    max_keep_alive_s: int = 3600
    max_messages_per_s: float = 0.0
    max_bytes_per_s: float = 0.0
    # Topics no client may touch whatever the policy says (the fleet's control topic,
    # issue 6 item 4): checked on the client's view, before the policy and the mount.
    is_control_topic: Callable[[str], bool] | None = None


def _assigned_client_id() -> str:
    # MQTT 5 spec 3.1.3.1: a server-assigned id; 16 random bytes cannot collide in practice.
    return "mqttgate-" + secrets.token_hex(12)


class Session:
    """One client connection's protocol state. See the module docstring."""

    # Slotted (issue 7, memory per idle connection): a session has more attributes than
    # CPython 3.11 shares between instances' dicts (30), so each one got a private dict
    # of ~1.6 kB; the slots take ~0.3 kB. A new attribute must be listed here (mypy
    # --strict reports one that is not).
    __slots__ = (
        "_broker_aliases",
        "_byte_bucket",
        "_client_aliases",
        "_client_id_assigned",
        "_client_id_factory",
        "_connect_deadline",
        "_decisions",
        "_expires_at",
        "_from_client",
        "_from_upstream",
        "_head",
        "_inflight",
        "_keep_alive_s",
        "_known_from_client",
        "_known_from_upstream",
        "_last_client_activity",
        "_local_qos2_from_broker",
        "_local_qos2_from_client",
        "_message_bucket",
        "_now",
        "_reauth_pending",
        "_sample_next",
        "_sealed_will",
        "_unlimited",
        "allow_ledger",
        "allow_sample_ratio",
        "allowed_counts",
        "client_id",
        "close_reason",
        "coalesced_down",
        "coalesced_up",
        "connect",
        "identity",
        "mount",
        "org",
        "policy",
        "protection",
        "protocol_level",
        "quiet_allows",
        "settings",
        "state",
        "subscriptions",
        "upstream_client_id",
    )

    def __init__(
        self,
        settings: SessionSettings,
        now: float,
        policy: Policy,
        *,
        client_id_factory: Callable[[], str] = _assigned_client_id,
    ) -> None:
        self.settings = settings
        self.policy = policy
        # Decisions for this session's identity under this policy, by (action, topic, qos,
        # retain): a hot topic costs one dict lookup. Cleared when the policy or the
        # identity changes; bounded by clearing when full (topics are usually few).
        self._decisions: dict[tuple[str, str, int, bool], PolicyDecision] = {}
        # PUBLISH topics allowed and forwarded byte for byte, per direction: later packets
        # with the same first byte and topic skip decoding (core/knownpackets.py).
        self._known_from_client = KnownTopics()
        self._known_from_upstream = KnownTopics()
        # Packets that went out inside another's bytes (a run of known packets is one
        # chunk of ``Step.to_upstream``/``to_client``): the shell counts chunks, plus these.
        self.coalesced_up = 0
        self.coalesced_down = 0
        # When nothing records allowed decisions (no audit log, no sampled allow spans,
        # no live viewer) the shell sets this: allows are then only counted, here, and
        # the shell adds the counts to its metrics (issue 7: no per-message allocation).
        self.quiet_allows = False
        # With quiet allows: the share of them that still become events, for sampled
        # spans (issue 7: drawn here, before anything is built, so the other allows cost
        # a count). Known packets are used only when it is 0.
        self.allow_sample_ratio = 0.0
        # A known packet was drawn for a span: the full path audits the next allow.
        self._sample_next = False
        self.allowed_counts: dict[str, int] = {}
        # With quiet allows, when the audit log still wants every allow: the allows
        # counted above are also appended here, in order, and the shell takes the list
        # (issue 7: a record costs a list append on the data path). Set by the shell
        # before the first packet; None when nothing logs allows.
        self.allow_ledger: list[LoggedAllow] | None = None
        self.subscriptions = SubscriptionBook()
        self.mount: TopicMount | None = None
        self.org: str | None = None
        # Payload encryption and retention by TTL (issue 10), shared by all sessions.
        self.protection: DataProtection | None = None
        self._sealed_will: Will | None = None
        self._client_aliases = TopicAliases(settings.topic_alias_maximum)
        # The broker is told the client accepts no aliases (upstream CONNECT); if it
        # sends some anyway they are resolved, up to the same bound.
        self._broker_aliases = TopicAliases(settings.topic_alias_maximum)
        # QoS 2 flows the gateway answers itself (refused publishes from the client,
        # refused deliveries from the broker), keyed by packet identifier.
        self._local_qos2_from_client: set[int] = set()
        self._local_qos2_from_broker: set[int] = set()
        self.state = SessionState.AWAIT_CONNECT
        self.protocol_level: int | None = None
        self.identity: Identity | None = None
        self.client_id: str | None = None
        self.upstream_client_id: str | None = None
        self.connect: Connect | None = None
        self._client_id_assigned = False
        self._client_id_factory = client_id_factory
        self._from_client = PacketDecoder(
            max_packet_size=settings.max_packet_size, expect_connect=True
        )
        self._from_upstream: PacketDecoder | None = None
        self._connect_deadline: float | None = now + settings.connect_timeout_s
        self._now = now
        self._last_client_activity = now
        self._keep_alive_s = 0  # the keep-alive in force, after the gateway's maximum
        self._inflight: set[int] = set()  # client QoS 1/2 publishes the broker has not completed
        self._message_bucket = (
            TokenBucket(settings.max_messages_per_s, 2 * settings.max_messages_per_s, now)
            if settings.max_messages_per_s > 0
            else None
        )
        self._byte_bucket = (
            TokenBucket(settings.max_bytes_per_s, 2 * settings.max_bytes_per_s, now)
            if settings.max_bytes_per_s > 0
            else None
        )
        # No per-message rate limit: known packets may skip the full path.
        self._unlimited = self._message_bucket is None and self._byte_bucket is None
        self._expires_at: float | None = None
        self._reauth_pending = False
        self.close_reason: str | None = None
        self._head = b""  # the CONNECT's first bytes, to answer a malformed one in its version

    # -- inputs from the shell ---------------------------------------------------

    def receive_from_client(self, data: bytes, now: float | None = None) -> Step:
        step = Step()
        if self.state is SessionState.CLOSED:
            return step
        if now is not None:
            self._now = now
        self._last_client_activity = self._now
        if (
            self.state is SessionState.CONNECTED
            and self._unlimited
            and self._known_lane()
            and not self._from_client.buffered
        ):
            # The common case: whole packets, all known, straight from the caller's bytes.
            end = self._known_run(data, 0, step, from_client=True)
            if end == len(data):
                return step
            data = data[end:]
        if self.state is SessionState.AWAIT_CONNECT and len(self._head) < CONNECT_HEAD_BYTES:
            self._head += data[: CONNECT_HEAD_BYTES - len(self._head)]
        self._from_client.feed(data)
        if self.state is SessionState.AWAIT_CONNECT:
            self._read_connect(step)
        elif self.state is SessionState.CONNECTED:
            self._drain_client(step)
        elif self._from_client.buffered > self.settings.max_packet_size + EARLY_DATA_SLACK:
            self._close(step, "early_data_limit", WS_POLICY_VIOLATION)
        return step

    def receive_from_upstream(self, data: bytes) -> Step:
        step = Step()
        if self.state is SessionState.CLOSED or self._from_upstream is None:
            return step
        decoder = self._from_upstream
        if self.state is SessionState.CONNECTED and self._known_lane() and not decoder.buffered:
            end = self._known_run(data, 0, step, from_client=False)
            if end == len(data):
                return step
            data = data[end:]
        decoder.feed(data)
        while self._open():
            if (
                self._known_lane()
                and self.state is SessionState.CONNECTED
                and self._known_in_decoder(decoder, step, from_client=False)
            ):
                break
            try:
                raw = decoder.next_packet()
            except MQTTError as exc:
                self._upstream_error(step, f"upstream_{type(exc).__name__}: {exc}")
                break
            if raw is None:
                break
            self._upstream_packet(raw, step)
        return step

    def _known_lane(self) -> bool:
        """Known packets may skip the full path: allows are only counted (or sampled by
        the scan), and the packet a scan stopped at for a span has been audited."""
        return self.quiet_allows and not self._sample_next

    def _known_run(self, buf: bytes | bytearray, pos: int, step: Step, from_client: bool) -> int:
        """Forward the known packets at ``buf[pos:]`` (core/knownpackets.py), from the
        client or from the broker; their end."""
        if from_client:
            known, max_size = self._known_from_client, self.settings.max_packet_size
            receive_maximum: int | None = self.settings.receive_maximum
        else:
            assert self._from_upstream is not None
            known, max_size = self._known_from_upstream, self._from_upstream.max_packet_size
            receive_maximum = None  # the broker's PUBACKs end flows instead (scan_known)
        end, packets, publishes, sampled = scan_known(
            buf,
            pos,
            known,
            self.protocol_level == MQTT_5,
            max_size,
            self._inflight,
            receive_maximum,
            self.allow_sample_ratio,
            self.allow_ledger,
        )
        self._sample_next = sampled
        if end != pos:
            run = buf if end - pos == len(buf) and type(buf) is bytes else bytes(buf[pos:end])
            counts = self.allowed_counts
            if from_client:
                step.to_upstream.append(run)
                self.coalesced_up += packets - 1
                if publishes:
                    counts["publish"] = counts.get("publish", 0) + publishes
            else:
                step.to_client.append(run)
                self.coalesced_down += packets - 1
                if publishes:
                    counts["delivery"] = counts.get("delivery", 0) + publishes
        return end

    def _known_in_decoder(self, decoder: PacketDecoder, step: Step, from_client: bool) -> bool:
        """The known packets at the front of what ``decoder`` holds, forwarded and skipped;
        True when nothing is left for the full path."""
        buf, pos = decoder.unread()
        end = self._known_run(buf, pos, step, from_client)
        if end == pos:
            return False
        decoder.skip_to(end)
        return end == len(buf)

    def auth_succeeded(
        self,
        identity: Identity,
        upstream_client_id: str,
        *,
        policy: Policy | None = None,
        mount: TopicMount | None = None,
        org: str | None = None,
    ) -> Step:
        """The shell verified the credentials of the CONNECT.

        ``policy`` replaces the session's policy (an org's own); ``mount`` puts every
        topic of the session under a tenant prefix upstream (issue 6, item 1).
        """
        step = Step()
        if self.state is not SessionState.AUTHENTICATING:
            return step
        assert self.client_id is not None
        if policy is not None:
            self.policy = policy
        self._forget_decisions()
        self.mount = mount
        self.org = org
        self.identity = identity.with_client_id(self.client_id)
        self.upstream_client_id = upstream_client_id
        self._expires_at = identity.expires_at
        will = self.connect.will if self.connect is not None else None
        if will is not None and self._reserved(will.topic, will.properties):
            self._audit(step, "connect", "deny", "will_control_topic")
            self._refuse_connect(
                step, ReasonCode.NOT_AUTHORIZED, ConnackV3.NOT_AUTHORIZED, "will_denied"
            )
            return step
        if will is not None:
            # The will is a PUBLISH the broker makes later on the client's behalf; it is
            # authorized now, since nothing can stop it once the broker holds it.
            d = self.policy.authorize_publish(self.identity, will.topic, will.qos, will.retain)
            self._audit_decision(step, "will", will.topic, will.qos, will.retain, d)
            if not d.allowed:
                self._audit(step, "connect", "deny", "will_" + d.reason)
                self._refuse_connect(
                    step, ReasonCode.NOT_AUTHORIZED, ConnackV3.NOT_AUTHORIZED, "will_denied"
                )
                return step
            problem = self._protect_will(will)
            if problem is not None:
                self._audit(step, "connect", "deny", "will_" + problem)
                self._refuse_connect(
                    step, ReasonCode.UNSPECIFIED_ERROR, ConnackV3.SERVER_UNAVAILABLE, problem
                )
                return step
        self.state = SessionState.OPENING_UPSTREAM
        step.actions.append(OpenUpstream())
        return step

    def _protect_will(self, will: Will) -> str | None:
        """The will as the broker will store it: mounted, sealed when its topic is
        encrypted. Returns why it cannot be sealed, if it cannot."""
        topic = self.mount.topic_up(will.topic) if self.mount is not None else will.topic
        props = will.properties
        if self.mount is not None:
            props = _mount_response_topic(props, self.mount.topic_up)
        payload = will.payload
        dp = self.protection
        if dp is not None and payload and dp.protector.applies(topic):
            sealed = dp.protector.seal(topic, payload, props, self.org)
            if isinstance(sealed, SealFailure):
                return sealed.reason
            payload, props = sealed
        self._sealed_will = dataclasses.replace(
            will, topic=topic, payload=payload, properties=props
        )
        return None

    def policy_changed(self, policy: Policy) -> Step:
        """A new policy: new decisions use it, and subscriptions it refuses are revoked."""
        self.policy = policy
        self._forget_decisions()
        return self._recheck_subscriptions("policy_changed")

    def _recheck_subscriptions(self, why: str) -> Step:
        step = Step()
        if self.state is not SessionState.CONNECTED or self.identity is None:
            return step
        revoked: list[str] = []
        for flt, sub in list(self.subscriptions.active.items()):
            d = self.policy.authorize_subscribe(self.identity, flt, sub.qos)
            if not d.allowed:
                revoked.append(flt)
                del self.subscriptions.active[flt]
                self._audit_decision(step, "revoke", flt, sub.qos, False, d, cause=why)
        if revoked:
            assert self.protocol_level is not None
            pid = self.subscriptions.own_packet_id()
            filters = tuple(self._filter_up(f) for f in revoked)
            step.to_upstream.append(encode(Unsubscribe(pid, filters), self.protocol_level))
        return step

    def auth_failed(self, reason: str, connack_v5: int, connack_v3: int) -> Step:
        """The credentials were refused: CONNACK with the code, then close (no upstream)."""
        step = Step()
        if self.state is not SessionState.AUTHENTICATING:
            return step
        self._audit(step, "connect", "deny", reason)
        self._refuse_connect(step, connack_v5, connack_v3, reason)
        return step

    def upstream_connected(self) -> Step:
        """The broker connection is open: send it the rewritten CONNECT."""
        step = Step()
        if self.state is not SessionState.OPENING_UPSTREAM:
            return step
        assert self.connect is not None and self.protocol_level is not None
        self._from_upstream = PacketDecoder(
            max_packet_size=self._client_max_packet_size(), protocol_level=self.protocol_level
        )
        step.to_upstream.append(encode(self._upstream_connect(self.connect), self.protocol_level))
        # The token (password or Authentication Data) and the will were for the upstream
        # CONNECT only; an idle session should not keep them (a JWT is ~0.7 kB, a will
        # up to max_packet_size). What is read later (keep-alive, properties) stays.
        self.connect = _without_credentials(self.connect)
        self._sealed_will = None
        self.state = SessionState.AWAIT_CONNACK
        return step

    def upstream_failed(self, reason: str) -> Step:
        """The broker could not be reached: v5 CONNACK 0x88, v3.1.1 0x03 (issue 2, item 6)."""
        step = Step()
        if self.state not in (SessionState.OPENING_UPSTREAM, SessionState.AWAIT_CONNACK):
            return self.upstream_closed()
        self._audit(step, "connect", "deny", "upstream_unavailable", detail=reason)
        self._refuse_connect(
            step,
            ReasonCode.SERVER_UNAVAILABLE,
            ConnackV3.SERVER_UNAVAILABLE,
            "upstream_unavailable",
        )
        return step

    def client_closed(self) -> Step:
        """The client's connection ended; the broker sees an abrupt close, so a will fires."""
        step = Step()
        if self.state is not SessionState.CLOSED:
            self._close(step, "client_closed", WS_NORMAL)
        return step

    def upstream_closed(self) -> Step:
        """The broker's connection ended: close the client too."""
        step = Step()
        if self.state is SessionState.CLOSED:
            return step
        if self.state in (SessionState.OPENING_UPSTREAM, SessionState.AWAIT_CONNACK):
            return self.upstream_failed("upstream closed before CONNACK")
        if self.protocol_level == MQTT_5:
            # MQTT 5 spec 4.13: the server may say why before it closes; the broker went
            # away without a DISCONNECT of its own, so the reason is unspecified.
            step.to_client.append(encode(Disconnect(ReasonCode.UNSPECIFIED_ERROR), MQTT_5))
        self._audit(step, "disconnect", "info", "upstream_closed")
        self._close(step, "upstream_closed", WS_NORMAL)
        return step

    def shutdown(self) -> Step:
        """The gateway is stopping: v5 clients get DISCONNECT 0x8B (Server shutting down)."""
        step = Step()
        if self.state is SessionState.CLOSED:
            return step
        if self.state is SessionState.CONNECTED and self.protocol_level == MQTT_5:
            step.to_client.append(encode(Disconnect(ReasonCode.SERVER_SHUTTING_DOWN), MQTT_5))
        if self.state is SessionState.CONNECTED:
            # The broker keeps the session; a clean DISCONNECT means no will is sent
            # for a gateway restart the client did not cause.
            assert self.protocol_level is not None
            step.to_upstream.append(encode(Disconnect(ReasonCode.SUCCESS), self.protocol_level))
        self._close(step, "server_shutting_down", WS_NORMAL)
        return step

    def kick(self) -> Step:
        """An administrator ends the session: v5 DISCONNECT 0x98 (Administrative action)."""
        step = Step()
        if self.state is SessionState.CLOSED:
            return step
        self._audit(step, "disconnect", "deny", "administrative_action")
        self._disconnect_client(step, ReasonCode.ADMINISTRATIVE_ACTION, "administrative_action")
        return step

    def reauth_succeeded(self, identity: Identity) -> Step:
        step = Step()
        if self.state is not SessionState.CONNECTED or not self._reauth_pending:
            return step
        assert self.client_id is not None
        self._reauth_pending = False
        self.identity = identity.with_client_id(self.client_id)
        self._forget_decisions()
        self._expires_at = identity.expires_at
        self._audit(step, "reauth", "allow", "reauthenticated")
        props = ((PropertyId.AUTHENTICATION_METHOD, JWT_AUTH_METHOD),)
        step.to_client.append(encode(Auth(ReasonCode.SUCCESS, Properties(props)), MQTT_5))
        # New claims (a role removed, say) may no longer allow what was subscribed.
        recheck = self._recheck_subscriptions("reauthenticated")
        step.to_upstream += recheck.to_upstream
        step.actions += recheck.actions
        return step

    def reauth_failed(self, reason: str) -> Step:
        step = Step()
        if self.state is not SessionState.CONNECTED or not self._reauth_pending:
            return step
        self._reauth_pending = False
        self._audit(step, "reauth", "deny", reason)
        self._disconnect_client(step, ReasonCode.NOT_AUTHORIZED, reason)
        return step

    @property
    def upstream_buffered(self) -> int:
        """Bytes read from the broker that do not make a whole packet yet."""
        return self._from_upstream.buffered if self._from_upstream is not None else 0

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called (wall-clock seconds), if ever."""
        if self.state is SessionState.CLOSED:
            return None
        if self._connect_deadline is not None:
            return self._connect_deadline
        keep_alive = self._keep_alive_deadline()
        if keep_alive is None:
            return self._expires_at
        if self._expires_at is None:
            return keep_alive
        return min(keep_alive, self._expires_at)

    def _keep_alive_deadline(self) -> float | None:
        # MQTT 5 spec 3.1.2.10: one and a half times the Keep Alive without a packet.
        if self._keep_alive_s <= 0 or self.state is not SessionState.CONNECTED:
            return None
        return self._last_client_activity + 1.5 * self._keep_alive_s

    def handle_timer(self, now: float) -> Step:
        step = Step()
        if self.state is SessionState.CLOSED:
            return step
        if self._connect_deadline is not None and now >= self._connect_deadline:
            self._audit(step, "connect", "deny", "connect_timeout")
            self._close(step, "connect_timeout", WS_POLICY_VIOLATION)
        elif self._expires_at is not None and now >= self._expires_at:
            self._audit(step, "disconnect", "deny", "token_expired")
            # MQTT 5 spec 2.4: 0xA0 Maximum connect time, "the maximum connection time
            # authorized for this connection has been exceeded".
            self._disconnect_client(step, ReasonCode.MAXIMUM_CONNECT_TIME, "token_expired")
        else:
            keep_alive = self._keep_alive_deadline()
            if keep_alive is not None and now >= keep_alive:
                self._audit(step, "disconnect", "deny", "keep_alive_timeout")
                self._disconnect_client(step, ReasonCode.KEEP_ALIVE_TIMEOUT, "keep_alive_timeout")
        return step

    def _open(self) -> bool:
        # A method, not an inline comparison: handlers called in the loop change state.
        return self.state is not SessionState.CLOSED

    # -- CONNECT -----------------------------------------------------------------

    def _read_connect(self, step: Step) -> None:
        try:
            raw = self._from_client.next_packet()
        except MQTTError as exc:
            self._connect_error(step, exc)
            return
        if raw is None:
            return
        packet = raw.packet
        assert isinstance(packet, Connect)  # expect_connect guarantees it
        self.protocol_level = packet.protocol_level
        method = packet.properties.get(PropertyId.AUTHENTICATION_METHOD)
        if method is not None and method != JWT_AUTH_METHOD:
            self._audit(step, "connect", "deny", "bad_authentication_method")
            self._refuse_connect(
                step,
                ReasonCode.BAD_AUTHENTICATION_METHOD,
                ConnackV3.NOT_AUTHORIZED,
                "bad_authentication_method",
            )
            return
        client_id = packet.client_id
        if not client_id:
            # MQTT 3.1.1 spec 3.1.3.1: an empty id needs CleanSession=1; 3.1 forbids it.
            if packet.protocol_level != MQTT_5 and (
                not packet.clean_start or packet.protocol_level == 3
            ):
                self._audit(step, "connect", "deny", "client_id_rejected")
                self._refuse_connect(
                    step,
                    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                    ConnackV3.IDENTIFIER_REJECTED,
                    "client_id_rejected",
                )
                return
            client_id = self._client_id_factory()
            self._client_id_assigned = True
        elif packet.protocol_level == 3 and len(client_id) > MQTT31_MAX_CLIENT_ID:
            self._audit(step, "connect", "deny", "client_id_rejected")
            self._refuse_connect(
                step,
                ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                ConnackV3.IDENTIFIER_REJECTED,
                "client_id_rejected",
            )
            return
        self.client_id = client_id
        self.connect = packet
        max_ka = self.settings.max_keep_alive_s
        # MQTT 5 spec 3.2.2.3.14: the server may impose its own keep-alive; a client that
        # asks for none (0) or for more than the maximum gets the maximum.
        self._keep_alive_s = (
            max_ka
            if max_ka > 0 and (packet.keep_alive == 0 or packet.keep_alive > max_ka)
            else packet.keep_alive
        )
        self.state = SessionState.AUTHENTICATING
        step.actions.append(Authenticate(packet, client_id, self._client_id_assigned))

    def _connect_error(self, step: Step, exc: MQTTError) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self._audit(step, "connect", "deny", _error_reason(exc), detail=str(exc))
        level = self._from_client.protocol_level or peek_protocol_level(self._head)
        if isinstance(exc, UnsupportedProtocolVersion):
            # MQTT 5 spec 3.1.2.2 / 3.1.1 spec 3.1.2.2: answer in a form the client can
            # read: a v3.1.1 CONNACK 0x01 unless it asked for v5.
            if level == MQTT_5:
                step.to_client.append(encode(Connack(False, exc.reason_code), MQTT_5))
            else:
                step.to_client.append(
                    encode(Connack(False, ConnackV3.UNACCEPTABLE_PROTOCOL_VERSION), 4)
                )
        elif level == MQTT_5:
            # MQTT 5 spec 4.13.1: a CONNACK with the reason code, then close.
            step.to_client.append(encode(Connack(False, exc.reason_code), MQTT_5))
        self._close(step, reason, _ws_code(exc))

    def _upstream_connect(self, connect: Connect) -> Connect:
        """The CONNECT the broker sees: the gateway's credentials, the derived client id.

        The user's token (password or Authentication Data) never leaves the gateway.
        """
        assert self.upstream_client_id is not None
        props = connect.properties.without(PropertyId.AUTHENTICATION_METHOD).without(
            PropertyId.AUTHENTICATION_DATA
        )
        if connect.protocol_level == MQTT_5:
            props = props.with_(PropertyId.MAXIMUM_PACKET_SIZE, self._client_max_packet_size())
            # No aliases from the broker (spec 3.1.2.11.5, default 0): deliveries carry
            # their topic, which the delivery check reads.
            props = props.without(PropertyId.TOPIC_ALIAS_MAXIMUM)
        password = self.settings.upstream_password
        username = self.settings.upstream_username
        if username is None:
            password = None  # MQTT 3.1.1 spec 3.1.2.9: no password without a user name
        will = self._sealed_will if connect.will is not None else None
        # The gateway enforces the client's keep-alive itself (handle_timer) and passes its
        # PINGREQs on; the broker is given twice as long, so that its own check (MQTT 5
        # spec 3.1.2.10) never ends the session before the gateway's, with a vaguer reason.
        keep_alive = min(KEEP_ALIVE_MAX, 2 * self._keep_alive_s)
        return dataclasses.replace(
            connect,
            keep_alive=keep_alive,
            will=will,
            client_id=self.upstream_client_id,
            username=username,
            password=password,
            properties=props,
        )

    def _filter_up(self, topic_filter: str) -> str:
        return topic_filter if self.mount is None else self.mount.filter_up(topic_filter)

    def _client_max_packet_size(self) -> int:
        assert self.connect is not None
        ours = self.settings.max_packet_size
        theirs = self.connect.properties.get(PropertyId.MAXIMUM_PACKET_SIZE)
        return min(ours, theirs) if isinstance(theirs, int) else ours

    def _refuse_connect(self, step: Step, code_v5: int, code_v3: int, reason: str) -> None:
        if self.protocol_level == MQTT_5:
            step.to_client.append(encode(Connack(False, code_v5), MQTT_5))
        else:
            step.to_client.append(encode(Connack(False, code_v3), self.protocol_level or 4))
        self._close(step, reason, WS_POLICY_VIOLATION)

    # -- packets from the client -------------------------------------------------

    def _drain_client(self, step: Step) -> None:
        decoder = self._from_client
        while self.state is SessionState.CONNECTED:
            if (
                self._unlimited
                and self._known_lane()
                and self._known_in_decoder(decoder, step, from_client=True)
            ):
                return
            try:
                raw = decoder.next_packet()
            except MQTTError as exc:
                self._audit(step, "disconnect", "deny", _error_reason(exc), detail=str(exc))
                self._disconnect_client(step, exc.reason_code, f"{type(exc).__name__}: {exc}")
                return
            if raw is None:
                return
            self._client_packet(raw, step)

    def _client_packet(self, raw: RawPacket, step: Step) -> None:
        packet = raw.packet
        if isinstance(packet, Publish):
            self.on_client_publish(raw, packet, step)
        elif isinstance(packet, Subscribe):
            self.on_client_subscribe(raw, packet, step)
        elif isinstance(packet, Pubrel) and packet.packet_id in self._local_qos2_from_client:
            # The end of a QoS 2 flow the gateway answered itself (a refused PUBLISH).
            self._local_qos2_from_client.discard(packet.packet_id)
            step.to_client.append(encode(Pubcomp(packet.packet_id), self._level()))
        elif isinstance(packet, Unsubscribe):
            for flt in packet.topic_filters:
                self.subscriptions.active.pop(flt, None)
            if self.mount is None:
                step.to_upstream.append(raw.raw)
            else:
                filters = tuple(self.mount.filter_up(f) for f in packet.topic_filters)
                out = dataclasses.replace(packet, topic_filters=filters)
                step.to_upstream.append(encode(out, self._level()))
        elif isinstance(packet, Auth):
            self._client_auth(packet, step)
        elif isinstance(packet, Disconnect):
            step.to_upstream.append(raw.raw)
            self._close(step, "client_disconnect", WS_NORMAL)
        elif isinstance(packet, Connect):
            # MQTT 5 spec 3.1.0-2: a second CONNECT is a Protocol Error.
            self._audit(step, "disconnect", "deny", "second_connect")
            self._disconnect_client(step, ReasonCode.PROTOCOL_ERROR, "second CONNECT")
        elif isinstance(packet, _SERVER_ONLY):
            self._audit(step, "disconnect", "deny", "protocol_error")
            self._disconnect_client(
                step, ReasonCode.PROTOCOL_ERROR, f"{type(packet).__name__} from a client"
            )
        else:
            step.to_upstream.append(raw.raw)

    def _client_auth(self, packet: Auth, step: Step) -> None:
        """MQTT 5 spec 4.12.1: re-authentication, answered by the gateway itself."""
        assert self.connect is not None
        if self.connect.properties.get(PropertyId.AUTHENTICATION_METHOD) is None:
            # [MQTT-4.12.0-6]: without an Authentication Method in CONNECT there is no AUTH
            # exchange at all; the client's AUTH is a Protocol Error.
            self._audit(step, "reauth", "deny", "no_authentication_method")
            self._disconnect_client(step, ReasonCode.PROTOCOL_ERROR, "no_authentication_method")
            return
        method = packet.properties.get(PropertyId.AUTHENTICATION_METHOD)
        if method != JWT_AUTH_METHOD:
            # MQTT 5 spec 4.12.1 [MQTT-4.12.1-1]: re-authentication must use the method of
            # the connection; anything else is a Protocol Error (0x8C is not a DISCONNECT code).
            self._audit(step, "reauth", "deny", "bad_authentication_method")
            self._disconnect_client(step, ReasonCode.PROTOCOL_ERROR, "bad_authentication_method")
            return
        data = packet.properties.get(PropertyId.AUTHENTICATION_DATA)
        if packet.reason_code != ReasonCode.REAUTHENTICATE or not isinstance(data, bytes):
            self._audit(step, "reauth", "deny", "protocol_error")
            self._disconnect_client(step, ReasonCode.PROTOCOL_ERROR, "unexpected AUTH")
            return
        if self._reauth_pending:
            self._audit(step, "reauth", "deny", "protocol_error")
            self._disconnect_client(step, ReasonCode.PROTOCOL_ERROR, "AUTH while re-authenticating")
            return
        try:
            token = data.decode("ascii")
        except UnicodeDecodeError:
            self._audit(step, "reauth", "deny", "malformed")
            self._disconnect_client(step, ReasonCode.NOT_AUTHORIZED, "malformed")
            return
        self._reauth_pending = True
        step.actions.append(Reauthenticate(token))

    def on_client_publish(self, raw: RawPacket, packet: Publish, step: Step) -> None:
        """A PUBLISH from the client: authorized on topic, QoS and retain (issue 5, item 2)."""
        if not self._within_rates(raw, packet, step):
            return
        topic = packet.topic
        alias = packet.properties.get(PropertyId.TOPIC_ALIAS) if packet.properties else None
        if isinstance(alias, int):
            resolved = self._client_aliases.resolve(topic, alias)
            if isinstance(resolved, AliasError):
                self._audit(step, "publish", "deny", resolved.reason, topic=topic, alias=alias)
                self._disconnect_client(step, resolved.reason_code, resolved.reason)
                return
            topic = resolved
        assert self.identity is not None
        too_big = self._topic_limit(topic)
        if too_big is None and self._reserved(topic, packet.properties):
            too_big = "control_topic"
        if too_big is not None:
            d = self._limit_decision(too_big)
            self._audit_decision(step, "publish", topic, packet.qos, packet.retain, d)
            code = (
                ReasonCode.NOT_AUTHORIZED
                if too_big == "control_topic"
                else ReasonCode.TOPIC_NAME_INVALID
            )
            self._refuse_publish(packet, step, d, code)
            return
        t0 = perf_counter_ns()
        key = ("p", topic, packet.qos, packet.retain)
        cached = self._decisions.get(key)
        d = (
            cached
            if cached is not None
            else self._remember(
                key, self.policy.authorize_publish(self.identity, topic, packet.qos, packet.retain)
            )
        )
        self._audit_decision(
            step,
            "publish",
            topic,
            packet.qos,
            packet.retain,
            d,
            decision_ns=perf_counter_ns() - t0,
        )
        if d.allowed:
            dp = self.protection
            broker_topic = self.mount.topic_up(topic) if self.mount is not None else topic
            rule_ttl = self.policy.retained_ttl(d.rule_id) if packet.retain else None
            if dp is not None and (
                (dp.encrypts and dp.protector.applies(broker_topic))
                or (
                    packet.retain
                    and (rule_ttl is not None or dp.retention.ttl_for(broker_topic) is not None)
                )
            ):
                if not self._protected_publish(packet, broker_topic, step, rule_ttl):
                    return
            elif self.mount is not None:
                props = packet.properties.without(PropertyId.TOPIC_ALIAS)
                props = _mount_response_topic(props, self.mount.topic_up)
                out = dataclasses.replace(packet, topic=broker_topic, properties=props)
                step.to_upstream.append(encode(out, self._level()))
            elif isinstance(alias, int):
                # Forwarded with its full topic and no alias: the broker's map stays empty.
                props = packet.properties.without(PropertyId.TOPIC_ALIAS)
                out = dataclasses.replace(packet, topic=topic, properties=props)
                step.to_upstream.append(encode(out, self._level()))
            else:
                step.to_upstream.append(raw.raw)
                if self.quiet_allows:
                    self._known_from_client.add(
                        raw.raw[0],
                        topic.encode(),
                        LoggedAllow("publish", topic, packet.qos, packet.retain, d),
                    )
            if packet.packet_id is not None:
                self._inflight.add(packet.packet_id)
            return
        self._refuse_publish(packet, step, d)

    def _protected_publish(
        self, packet: Publish, broker_topic: str, step: Step, rule_ttl: int | None = None
    ) -> bool:
        """Seal and bound the lifetime of an allowed PUBLISH (issue 10); False when it is
        refused instead (no key to seal with: nothing goes upstream in clear)."""
        assert self.protection is not None
        props = packet.properties.without(PropertyId.TOPIC_ALIAS)
        if self.mount is not None:
            props = _mount_response_topic(props, self.mount.topic_up)
        out = dataclasses.replace(packet, topic=broker_topic, properties=props)
        result = self.protection.to_upstream(out, self.org, self._level(), rule_ttl)
        if isinstance(result, SealFailure):
            d = self._limit_decision("seal_" + result.reason)
            self._audit_decision(step, "publish", packet.topic, packet.qos, packet.retain, d)
            self._refuse_publish(packet, step, d, ReasonCode.UNSPECIFIED_ERROR)
            return False
        step.to_upstream.append(encode(result.publish, self._level()))
        if result.retained_ttl_s is not None:
            step.actions.append(RetainedStored(broker_topic, self.org, result.retained_ttl_s))
        elif result.clears_retained:
            step.actions.append(RetainedCleared(broker_topic))
        return True

    def _within_rates(self, raw: RawPacket, packet: Publish, step: Step) -> bool:
        """Message and byte rates, and the in-flight window (issue 9, item 3)."""
        now = self._now
        if self._message_bucket is not None and not self._message_bucket.take(1, now):
            self._audit(step, "disconnect", "deny", "message_rate_too_high")
            self._disconnect_client(step, ReasonCode.MESSAGE_RATE_TOO_HIGH, "message_rate")
            return False
        if self._byte_bucket is not None and not self._byte_bucket.take(len(raw.raw), now):
            self._audit(step, "disconnect", "deny", "quota_exceeded")
            self._disconnect_client(step, ReasonCode.QUOTA_EXCEEDED, "byte_rate")
            return False
        pid = packet.packet_id
        if (
            pid is not None
            and pid not in self._inflight
            and len(self._inflight) >= self.settings.receive_maximum
        ):
            # MQTT 5 spec 3.3.4: more unacknowledged QoS 1/2 PUBLISHes than the Receive
            # Maximum the gateway announced.
            self._audit(step, "disconnect", "deny", "receive_maximum_exceeded")
            self._disconnect_client(
                step, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive_maximum_exceeded"
            )
            return False
        return True

    def _topic_limit(self, topic: str) -> str | None:
        if len(topic) > self.settings.max_topic_length and (
            len(topic.encode()) > self.settings.max_topic_length
        ):
            return "topic_too_long"
        if topic.count("/") >= self.settings.max_topic_levels:
            return "topic_too_deep"
        return None

    def _reserved(self, topic: str, props: Properties | None) -> bool:
        """A topic, filter or v5 Response Topic in the gateway's own control namespace."""
        pred = self.settings.is_control_topic
        if pred is None:
            return False
        if pred(topic):
            return True
        rt = props.get(PropertyId.RESPONSE_TOPIC) if props else None
        return isinstance(rt, str) and pred(rt)

    def _limit_decision(self, reason: str) -> PolicyDecision:
        return PolicyDecision("deny", reason, None, None, None, self.policy.version)

    def _refuse_publish(
        self,
        packet: Publish,
        step: Step,
        d: PolicyDecision,
        v5_code: int = ReasonCode.NOT_AUTHORIZED,
    ) -> None:
        """Nothing refused reaches the broker; the client's QoS flow is completed here."""
        level = self._level()
        if level != MQTT_5 and self.settings.on_publish_deny == "disconnect":
            self._close(step, "publish_denied", WS_POLICY_VIOLATION)
            return
        code = v5_code if level == MQTT_5 else 0
        if packet.qos == 1 and packet.packet_id is not None:
            step.to_client.append(encode(Puback(packet.packet_id, code), level))
        elif packet.qos == 2 and packet.packet_id is not None:
            step.to_client.append(encode(Pubrec(packet.packet_id, code), level))
            # v3.1.1 4.3.3: the client answers PUBREC with PUBREL, which the gateway
            # completes; v5 ends the flow at a failing PUBREC, but a PUBREL is answered too.
            self._local_qos2_from_client.add(packet.packet_id)

    def on_client_subscribe(self, raw: RawPacket, packet: Subscribe, step: Step) -> None:
        """A decision per filter; only allowed filters reach the broker (issue 5, item 4)."""
        assert self.identity is not None
        level = self._level()
        codes: list[int | None] = []
        forwarded: list[Subscription] = []
        rule_ids: list[str | None] = []
        changed = False
        held = len(self.subscriptions.active) + sum(
            len(p.forwarded) for p in self.subscriptions.pending.values()
        )
        for sub in packet.subscriptions:
            limit = self._topic_limit(sub.topic_filter)
            if limit is None and self._reserved(sub.topic_filter, None):
                limit = "control_topic"
            if (
                limit is None
                and sub.topic_filter not in self.subscriptions.active
                and (held + len(forwarded) >= self.settings.max_subscriptions)
            ):
                limit = "subscription_quota_exceeded"
            if limit is not None:
                d = self._limit_decision(limit)
                self._audit_decision(step, "subscribe", sub.topic_filter, sub.qos, False, d)
                changed = True
                codes.append(_subscribe_refusal(level, d))
                continue
            t0 = perf_counter_ns()
            d = self.policy.authorize_subscribe(self.identity, sub.topic_filter, sub.qos)
            self._audit_decision(
                step,
                "subscribe",
                sub.topic_filter,
                sub.qos,
                False,
                d,
                decision_ns=perf_counter_ns() - t0,
            )
            if d.allowed and d.granted_qos is not None:
                if d.granted_qos != sub.qos:
                    sub = dataclasses.replace(sub, qos=d.granted_qos)
                    changed = True
                forwarded.append(sub)
                rule_ids.append(d.rule_id)
                codes.append(None)
            else:
                changed = True
                codes.append(_subscribe_refusal(level, d))
        if not forwarded:
            refusals = tuple(c for c in codes if c is not None)
            step.to_client.append(encode(Suback(packet.packet_id, refusals), level))
            return
        self.subscriptions.pending[packet.packet_id] = PendingSubscribe(codes, forwarded, rule_ids)
        if self.mount is not None:
            mount = self.mount
            upstream = tuple(
                dataclasses.replace(sub, topic_filter=mount.filter_up(sub.topic_filter))
                for sub in forwarded
            )
            step.to_upstream.append(
                encode(dataclasses.replace(packet, subscriptions=upstream), level)
            )
        elif changed:
            out = dataclasses.replace(packet, subscriptions=tuple(forwarded))
            step.to_upstream.append(encode(out, level))
        else:
            step.to_upstream.append(raw.raw)

    # -- packets from the broker -------------------------------------------------

    def _upstream_packet(self, raw: RawPacket, step: Step) -> None:
        packet = raw.packet
        if self.state is SessionState.AWAIT_CONNACK:
            if not isinstance(packet, Connack):
                self._upstream_error(step, f"upstream sent {type(packet).__name__} before CONNACK")
                return
            self._upstream_connack(packet, step)
            return
        if isinstance(packet, Publish):
            self.on_delivery(raw, packet, step)
        elif isinstance(packet, Puback | Pubcomp):
            self._inflight.discard(packet.packet_id)
            step.to_client.append(raw.raw)
        elif isinstance(packet, Pubrec):
            if packet.reason_code >= 0x80:  # MQTT 5 spec 4.3.3: a failing PUBREC ends it
                self._inflight.discard(packet.packet_id)
            step.to_client.append(raw.raw)
        elif isinstance(packet, Suback):
            self._upstream_suback(raw, packet, step)
        elif isinstance(packet, Unsuback):
            if not self.subscriptions.take_own_unsuback(packet.packet_id):
                step.to_client.append(raw.raw)
        elif isinstance(packet, Pubrel) and packet.packet_id in self._local_qos2_from_broker:
            self._local_qos2_from_broker.discard(packet.packet_id)
            step.to_upstream.append(encode(Pubcomp(packet.packet_id), self._level()))
        elif isinstance(packet, Disconnect):
            step.to_client.append(raw.raw)
            self._audit(
                step, "disconnect", "info", "upstream_disconnect", reason_code=packet.reason_code
            )
            self._close(step, "upstream_disconnect", WS_NORMAL)
        elif isinstance(packet, (*_CLIENT_ONLY, Connack, Auth)):
            self._upstream_error(step, f"upstream sent {type(packet).__name__}")
        else:
            step.to_client.append(raw.raw)

    def _upstream_connack(self, packet: Connack, step: Step) -> None:
        assert self.protocol_level is not None
        if packet.reason_code != 0:
            step.to_client.append(encode(packet, self.protocol_level))
            self._audit(step, "connect", "deny", "upstream_refused", reason_code=packet.reason_code)
            self._close(step, "upstream_refused", WS_POLICY_VIOLATION)
            return
        out = packet
        if self.protocol_level == MQTT_5:
            props = packet.properties
            if self._client_id_assigned:
                assert self.client_id is not None
                props = props.with_(PropertyId.ASSIGNED_CLIENT_IDENTIFIER, self.client_id)
            else:
                props = props.without(PropertyId.ASSIGNED_CLIENT_IDENTIFIER)
            assert self.connect is not None
            method = self.connect.properties.get(PropertyId.AUTHENTICATION_METHOD)
            if isinstance(method, str):
                # [MQTT-4.12.0-5]: a CONNACK that accepts enhanced authentication names the
                # method; the broker never saw it (the gateway authenticated), so add it.
                props = props.with_(PropertyId.AUTHENTICATION_METHOD, method)
            # The client's aliases end at the gateway (core/aliases.py): it offers its own.
            props = props.with_(PropertyId.TOPIC_ALIAS_MAXIMUM, self.settings.topic_alias_maximum)
            broker_ka = props.get(PropertyId.SERVER_KEEP_ALIVE)
            if isinstance(broker_ka, int) and broker_ka < self._keep_alive_s:
                self._keep_alive_s = broker_ka
            assert self.connect is not None
            if self._keep_alive_s != self.connect.keep_alive:
                props = props.with_(PropertyId.SERVER_KEEP_ALIVE, self._keep_alive_s)
            broker_rm = props.get(PropertyId.RECEIVE_MAXIMUM)
            ours = self.settings.receive_maximum
            props = props.with_(
                PropertyId.RECEIVE_MAXIMUM,
                min(ours, broker_rm) if isinstance(broker_rm, int) else ours,
            )
            broker_max = props.get(PropertyId.MAXIMUM_PACKET_SIZE)
            ours = self.settings.max_packet_size
            props = props.with_(
                PropertyId.MAXIMUM_PACKET_SIZE,
                min(ours, broker_max) if isinstance(broker_max, int) else ours,
            )
            out = dataclasses.replace(packet, properties=props)
        step.to_client.append(encode(out, self.protocol_level))
        self.state = SessionState.CONNECTED
        self._connect_deadline = None
        self._audit(
            step, "connect", "allow", "authenticated", session_present=packet.session_present
        )
        self._drain_client(step)

    def on_delivery(self, raw: RawPacket, packet: Publish, step: Step) -> None:
        """A PUBLISH from the broker, checked against what the identity may receive now.

        Defence in depth, and what makes revocation immediate (issue 5, item 5): a
        refused delivery is dropped and acknowledged to the broker, so that its flow
        control never stalls.
        """
        topic = packet.topic
        alias = packet.properties.get(PropertyId.TOPIC_ALIAS) if packet.properties else None
        if isinstance(alias, int):
            resolved = self._broker_aliases.resolve(topic, alias)
            if isinstance(resolved, AliasError):
                self._upstream_error(step, f"broker {resolved.reason}")
                return
            topic = resolved
        assert self.identity is not None
        dp = self.protection
        opened: Publish | None = None
        if dp is not None and dp.encrypts and dp.protector.applies(topic):
            result = dp.to_client(dataclasses.replace(packet, topic=topic), self.org)
            if isinstance(result, OpenFailure):
                # Never passed on as garbage: dropped, acknowledged, audited.
                self._audit(step, "delivery", "deny", "decrypt_" + result.reason, topic=topic)
                self._ack_refused_delivery(packet, step)
                return
            opened = result
        if self.mount is not None:
            inside = self.mount.topic_down(topic)
            if inside is None:
                # Not under the tenant's mount: never shown, whatever the policy says.
                self._audit(step, "delivery", "deny", "outside_mount", topic=topic)
                self._ack_refused_delivery(packet, step)
                return
            topic = inside
        t0 = perf_counter_ns()
        key = ("d", topic, packet.qos, False)
        cached = self._decisions.get(key)
        d = (
            cached
            if cached is not None
            else self._remember(key, self._delivery_decision(topic, packet.qos))
        )
        self._audit_decision(
            step,
            "delivery",
            topic,
            packet.qos,
            packet.retain,
            d,
            decision_ns=perf_counter_ns() - t0,
        )
        level = self._level()
        if d.allowed:
            if opened is not None or self.mount is not None:
                base = opened if opened is not None else packet
                props = base.properties.without(PropertyId.TOPIC_ALIAS)
                if self.mount is not None:
                    props = _mount_response_topic(props, self.mount.topic_down)
                out = dataclasses.replace(base, topic=topic, properties=props)
                step.to_client.append(encode(out, level))
            elif isinstance(alias, int):
                props = packet.properties.without(PropertyId.TOPIC_ALIAS)
                out = dataclasses.replace(packet, topic=topic, properties=props)
                step.to_client.append(encode(out, level))
            else:
                step.to_client.append(raw.raw)
                if self.quiet_allows:
                    self._known_from_upstream.add(
                        raw.raw[0],
                        topic.encode(),
                        LoggedAllow("delivery", topic, packet.qos, packet.retain, d),
                    )
            return
        self._ack_refused_delivery(packet, step)

    def _ack_refused_delivery(self, packet: Publish, step: Step) -> None:
        """Acknowledge a dropped delivery to the broker, so its flow control never stalls."""
        level = self._level()
        if packet.qos == 1 and packet.packet_id is not None:
            step.to_upstream.append(encode(Puback(packet.packet_id), level))
        elif packet.qos == 2 and packet.packet_id is not None:
            self._local_qos2_from_broker.add(packet.packet_id)
            step.to_upstream.append(encode(Pubrec(packet.packet_id), level))

    def _delivery_decision(self, topic: str, qos: int) -> PolicyDecision:
        assert self.identity is not None
        d = self.policy.authorize_delivery(self.identity, topic, qos)
        if d.allowed:
            return d
        # The message may have come through a shared subscription whose rule admits only
        # that group (ACL v2 share_group).
        for group in self.subscriptions.share_groups():
            alt = self.policy.authorize_delivery(self.identity, topic, qos, share_group=group)
            if alt.allowed:
                return alt
        return d

    def _forget_decisions(self) -> None:
        """The policy or the identity changed: every remembered decision goes."""
        self._decisions.clear()
        self._known_from_client.clear()
        self._known_from_upstream.clear()

    def _remember(self, key: tuple[str, str, int, bool], d: PolicyDecision) -> PolicyDecision:
        if len(self._decisions) >= DECISION_CACHE_SIZE:
            self._decisions.clear()
        self._decisions[key] = d
        return d

    def _upstream_suback(self, raw: RawPacket, packet: Suback, step: Step) -> None:
        """Merge the broker's codes with the gateway's refusals, in the client's order."""
        pending = self.subscriptions.pending.pop(packet.packet_id, None)
        if pending is None:
            step.to_client.append(raw.raw)
            return
        broker_codes = iter(packet.reason_codes)
        merged: list[int] = []
        forwarded = iter(zip(pending.forwarded, pending.rule_ids, strict=True))
        for code in pending.codes:
            if code is not None:
                merged.append(code)
                continue
            got = next(broker_codes, SUBACK_FAILURE_V3)
            merged.append(got)
            sub, rule_id = next(forwarded)
            if got < 0x80:
                self.subscriptions.active[sub.topic_filter] = ActiveSubscription(
                    sub.topic_filter, got, rule_id, share_group_of(sub.topic_filter)
                )
        if tuple(merged) == packet.reason_codes:
            step.to_client.append(raw.raw)
        else:
            out = dataclasses.replace(packet, reason_codes=tuple(merged))
            step.to_client.append(encode(out, self._level()))

    def _upstream_error(self, step: Step, reason: str) -> None:
        self._audit(step, "disconnect", "deny", "upstream_protocol_error", detail=reason)
        if self.state in (SessionState.OPENING_UPSTREAM, SessionState.AWAIT_CONNACK):
            self._refuse_connect(
                step, ReasonCode.SERVER_UNAVAILABLE, ConnackV3.SERVER_UNAVAILABLE, reason
            )
            return
        self._disconnect_client(step, ReasonCode.UNSPECIFIED_ERROR, reason)

    # -- closing -----------------------------------------------------------------

    def _disconnect_client(self, step: Step, reason_code: int, reason: str) -> None:
        """Close with a v5 DISCONNECT carrying ``reason_code``; v3.1.1 just closes."""
        if reason_code not in DISCONNECT_REASON_CODES:
            # A code that only CONNACK may carry (0x84 for a second CONNECT naming an
            # unknown level, say): a DISCONNECT says Protocol Error instead.
            reason_code = ReasonCode.PROTOCOL_ERROR
        if self.protocol_level == MQTT_5 and self.state is SessionState.CONNECTED:
            step.to_client.append(encode(Disconnect(reason_code), MQTT_5))
        ws_code = WS_PROTOCOL_ERROR if reason_code in (0x81, 0x82) else WS_POLICY_VIOLATION
        if reason_code == ReasonCode.PACKET_TOO_LARGE:
            ws_code = WS_MESSAGE_TOO_BIG
        self._close(step, reason, ws_code)

    def _close(self, step: Step, reason: str, ws_code: int) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.close_reason = reason
        self._connect_deadline = None
        step.actions.append(Close(reason, ws_code))

    def _level(self) -> int:
        assert self.protocol_level is not None
        return self.protocol_level

    def _audit_decision(
        self,
        step: Step,
        action: str,
        topic: str,
        qos: int,
        retain: bool,
        d: PolicyDecision,
        decision_ns: int = 0,
        **extra: object,
    ) -> None:
        sampled = False
        drawn, self._sample_next = self._sample_next, False
        if self.quiet_allows and d.verdict == "allow":
            ratio = self.allow_sample_ratio
            if not drawn and (ratio <= 0.0 or (ratio < 1.0 and _random() >= ratio)):
                self.allowed_counts[action] = self.allowed_counts.get(action, 0) + 1
                ledger = self.allow_ledger
                if ledger is not None:
                    ledger.append(LoggedAllow(action, topic, qos, retain, d, decision_ns))
                return
            sampled = True
        attributes: dict[str, object] = {
            "client_id": self.client_id,
            "topic": topic,
            "qos": qos,
            "retain": retain,
            "rule_id": d.rule_id,
            "pattern": d.pattern,
            "granted_qos": d.granted_qos,
            "policy_version": d.policy_version,
            "decision_ns": decision_ns,
        }
        attributes.update(extra)
        step.actions.append(AuditEvent(action, d.verdict, d.reason, attributes, sampled))

    def _audit(self, step: Step, kind: str, verdict: str, reason: str, **attrs: object) -> None:
        attributes: dict[str, object] = {"client_id": self.client_id}
        if self.protocol_level is not None:
            attributes["protocol_level"] = self.protocol_level
        attributes.update(attrs)
        step.actions.append(AuditEvent(kind, verdict, reason, attributes))


def _mount_response_topic(props: Properties, move: Callable[[str], str | None]) -> Properties:
    """MQTT 5 spec 4.10: a Response Topic names a topic too, so it moves with the mount."""
    rt = props.get(PropertyId.RESPONSE_TOPIC) if props else None
    if not isinstance(rt, str):
        return props
    moved = move(rt)
    return (
        props.without(PropertyId.RESPONSE_TOPIC)
        if moved is None
        else props.with_(PropertyId.RESPONSE_TOPIC, moved)
    )


def _subscribe_refusal(level: int, d: PolicyDecision) -> int:
    """v3.1.1: 0x80 (spec 3.9.3); v5: 0x8F for a filter that is not valid or too long,
    0x97 past the subscription quota, else 0x87."""
    if level != MQTT_5:
        return SUBACK_FAILURE_V3
    if d.reason in ("invalid_topic", "topic_too_long", "topic_too_deep"):
        return ReasonCode.TOPIC_FILTER_INVALID
    if d.reason == "subscription_quota_exceeded":
        return ReasonCode.QUOTA_EXCEEDED
    return ReasonCode.NOT_AUTHORIZED


def peek_protocol_level(head: bytes) -> int | None:
    """The protocol level byte of a CONNECT that may not decode (MQTT 5 spec 3.1.2.2).

    Fixed header (1 byte + remaining length), protocol name (2-byte length + name),
    then the level: enough to answer a malformed CONNECT in the client's version.
    """
    pos = 1
    for _ in range(4):
        if pos >= len(head):
            return None
        more = head[pos] & 0x80
        pos += 1
        if not more:
            break
    if pos + 2 > len(head):
        return None
    name_len = int.from_bytes(head[pos : pos + 2], "big")
    pos += 2 + name_len
    return head[pos] if pos < len(head) else None


def _error_reason(exc: MQTTError) -> str:
    if isinstance(exc, PacketTooLarge):
        return "packet_too_large"
    if isinstance(exc, UnsupportedProtocolVersion):
        return "unsupported_protocol_version"
    return (
        "malformed_packet" if exc.reason_code == ReasonCode.MALFORMED_PACKET else "protocol_error"
    )


def _ws_code(exc: MQTTError) -> int:
    return WS_MESSAGE_TOO_BIG if isinstance(exc, PacketTooLarge) else WS_PROTOCOL_ERROR


__all__ = ["Session", "SessionSettings", "SessionState"]
