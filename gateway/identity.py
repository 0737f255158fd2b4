"""The identity a session carries: named bindings that policies read.

A binding's value comes from a JWT claim, a webhook answer, a service account's
configuration or the MQTT CONNECT (``client_id``). Values are kept even when they
are unusable in a topic, and marked so, so that the policy engine can fail closed
on them instead of seeing a missing value (ACL v2, "Bindings fail closed").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

# The binding names every policy may use without configuring them.
STANDARD_BINDINGS: frozenset[str] = frozenset(
    {"user_id", "email", "agent_id", "session_id", "client_id", "role", "org"}
)


def is_usable_value(value: str) -> bool:
    """Whether a text value may stand in a topic level (ACL v2 "Bindings fail closed").

    Empty, wildcard characters, the level separator and U+0000 would let a value
    widen or escape a pattern; a leading ``$`` would reach broker-internal topics.
    """
    if not value or value.startswith("$"):
        return False
    return not any(c in value for c in ("+", "#", "/", "\x00"))


@dataclass(frozen=True, slots=True)
class Binding:
    """One named binding. ``values`` holds its text values (several for a list claim).

    ``present`` is False when the source had no such value at all. A value of a type
    that cannot be text (object, null, a list holding non-strings) is present with no
    values. ``usable`` is True only when every value may stand in a topic level.
    """

    name: str
    values: tuple[str, ...]
    present: bool = True

    @property
    def usable(self) -> bool:
        return self.present and bool(self.values) and all(is_usable_value(v) for v in self.values)

    @property
    def multi_valued(self) -> bool:
        return len(self.values) > 1


def binding_from_value(name: str, value: object) -> Binding:
    """Normalise a JSON value: strings as they are, numbers and booleans as JSON text,
    lists of strings multi-valued, anything else unusable (ACL v2 "Bindings")."""
    if value is None:
        return Binding(name, (), present=True)
    if isinstance(value, str):
        return Binding(name, (value,))
    if isinstance(value, bool | int | float):
        return Binding(name, (orjson.dumps(value).decode(),))
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, str) for v in value):
            return Binding(name, tuple(value))
        return Binding(name, ())
    return Binding(name, ())


def _missing(name: str) -> Binding:
    return Binding(name, (), present=False)


@dataclass(frozen=True, slots=True, eq=False)
class Identity:
    """Who is on the other end of a session; immutable for the session's life."""

    bindings: Mapping[str, Binding] = field(default_factory=lambda: MappingProxyType({}))
    principal: str | None = None
    issuer: str | None = None
    subject: str | None = None
    expires_at: float | None = None
    _key: tuple[tuple[str, tuple[str, ...], bool], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, object],
        *,
        principal: str | None = None,
        issuer: str | None = None,
        subject: str | None = None,
        expires_at: float | None = None,
    ) -> Identity:
        bindings = {name: binding_from_value(name, v) for name, v in values.items()}
        if principal is not None:
            bindings["principal"] = Binding("principal", (principal,))
        return cls(MappingProxyType(bindings), principal, issuer, subject, expires_at)

    def binding(self, name: str) -> Binding:
        """The binding called ``name``; a missing one is ``present=False``, never ''."""
        return self.bindings.get(name) or _missing(name)

    def with_client_id(self, client_id: str) -> Identity:
        """A copy with the ``client_id`` binding set to the id in force after CONNECT."""
        bindings = dict(self.bindings)
        bindings["client_id"] = Binding("client_id", (client_id,))
        return Identity(
            MappingProxyType(bindings), self.principal, self.issuer, self.subject, self.expires_at
        )

    def cache_key(self) -> tuple[tuple[str, tuple[str, ...], bool], ...]:
        """A hashable key that is equal for identities with equal bindings (computed once:
        the identity is immutable)."""
        key = self._key
        if key is None:
            key = tuple(sorted((b.name, b.values, b.present) for b in self.bindings.values()))
            object.__setattr__(self, "_key", key)
        return key

    def as_dict(self) -> dict[str, object]:
        """For audit and the admin API: binding name -> value (list when multi-valued)."""
        out: dict[str, object] = {}
        for name, b in self.bindings.items():
            out[name] = list(b.values) if b.multi_valued else (b.values[0] if b.values else None)
        return out

    def __iter__(self) -> Iterator[Binding]:
        return iter(self.bindings.values())


def identity_user_id(identity: Identity | None) -> str | None:
    """The first {user_id} value: what the audit trail names a decision's user by."""
    if identity is None:
        return None
    values = identity.binding("user_id").values
    return values[0] if values else None
