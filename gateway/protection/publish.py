"""Data protection applied to PUBLISH packets: the two calls the session makes.

``DataProtection.to_upstream`` runs on a client's PUBLISH after the policy allowed it and
after the tenancy mount moved it to its broker-side topic; ``to_client`` runs on every
delivery from the broker before the mount strips its prefix. Both are pure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.mqtt.packets import Publish
from gateway.protection.config import ProtectionConfig
from gateway.protection.keyring import Keyring
from gateway.protection.protector import OpenFailure, PayloadProtector, SealFailure
from gateway.protection.retention import RetentionPolicy


@dataclass(frozen=True, slots=True)
class Upstream:
    """The PUBLISH to send upstream, and what the retention sweeper must be told.

    ``retained_ttl_s`` is set for a retained, non-empty publish with a TTL: call
    ``sweeper.record(topic, org, retained_ttl_s)``. ``clears_retained`` is set for an
    empty retained publish: call ``sweeper.forget(topic)``.
    """

    publish: Publish
    retained_ttl_s: int | None = None
    clears_retained: bool = False


class DataProtection:
    """Encryption and retention for one gateway (shared by every session)."""

    __slots__ = ("encrypts", "protector", "retention")

    def __init__(self, config: ProtectionConfig, keyring: Keyring) -> None:
        self.protector = PayloadProtector(config, keyring)
        self.retention = RetentionPolicy(config.retain)
        # False when no topic is encrypted: the data path then skips the topic lookup.
        self.encrypts = bool(config.encrypt)

    def with_keyring(self, keyring: Keyring) -> DataProtection:
        """The same rules with a reloaded keyring (after ``mqttgate keys rotate``)."""
        other = object.__new__(DataProtection)
        other.protector = self.protector.with_keyring(keyring)
        other.retention = self.retention
        other.encrypts = self.encrypts
        return other

    def to_upstream(
        self,
        publish: Publish,
        org: str | None,
        protocol_level: int,
        rule_ttl: int | None = None,
    ) -> Upstream | SealFailure:
        """Seal the payload of a publish to an encrypted topic and bound the lifetime of a
        retained one. ``publish.topic`` must be the broker-side name (alias resolved,
        mount applied). A SealFailure means: refuse the publish, audit the reason."""
        topic = publish.topic
        out = publish
        ttl = None
        if publish.retain:
            ttl = self.retention.ttl_for(topic, rule_ttl)
            if ttl is not None and protocol_level == 5 and publish.payload:
                out = dataclasses.replace(
                    out,
                    properties=self.retention.expiry_for_publish(
                        topic, True, out.properties, protocol_level, rule_ttl
                    ),
                )
        if self.protector.applies(topic):
            sealed = self.protector.seal(topic, out.payload, out.properties, org)
            if isinstance(sealed, SealFailure):
                return sealed
            out = dataclasses.replace(out, payload=sealed[0], properties=sealed[1])
        if not publish.retain:
            return Upstream(out)
        if not publish.payload:
            return Upstream(out, clears_retained=True)
        return Upstream(out, retained_ttl_s=ttl)

    def to_client(self, publish: Publish, org: str | None) -> Publish | OpenFailure:
        """Open a delivery on an encrypted topic (``publish.topic`` broker-side). An
        OpenFailure means: drop the delivery (acknowledge it upstream), audit the reason."""
        if not self.protector.applies(publish.topic):
            return publish
        opened = self.protector.open(publish.topic, publish.payload, publish.properties, org)
        if isinstance(opened, OpenFailure):
            return opened
        return dataclasses.replace(publish, payload=opened[0], properties=opened[1])
