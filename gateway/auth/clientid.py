"""Client ids that cannot be hijacked (issue 3 §7).

``derive`` mode: the upstream client id is the template rendered with the identity's
bindings and the client's own id, so two identities can never meet on one broker
session. ``require`` mode: the client's id must match the template, where
``{client_id}`` stands for any text, and is used unchanged.

Substituted values are percent-encoded for ``%`` and every character of the template's
literal text, which keeps the mapping injective: with ``{user_id}:{client_id}`` the
first ``:`` always ends the user id, so user ``a:b`` cannot collide with user ``a``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from gateway.auth.config import ClientIdConfig
from gateway.auth.reasons import Reason, connack_v3, connack_v5
from gateway.identity import Identity


@dataclass(frozen=True, slots=True)
class ClientIdDecision:
    """The upstream client id, or why the client id is refused (v5 0x85, v3.1.1 0x02)."""

    upstream_client_id: str | None
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def connack_v5(self) -> int | None:
        return None if self.reason is None else connack_v5(self.reason)

    @property
    def connack_v3(self) -> int | None:
        return None if self.reason is None else connack_v3(self.reason)


class ClientIdRefused(Exception):
    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.connack_v5 = connack_v5(reason)
        self.connack_v3 = connack_v3(reason)


class ClientIdPolicy:
    def __init__(self, cfg: ClientIdConfig) -> None:
        self.cfg = cfg
        self._parts = list(string.Formatter().parse(cfg.template))
        literal_chars = set("".join(lit for lit, _, _, _ in self._parts)) | {"%", "\x00"}
        self._escape = {
            c: f"%{ord(c):02X}" if ord(c) < 256 else f"%u{ord(c):04X}" for c in literal_chars
        }

    def _encode(self, value: str) -> str:
        return "".join(self._escape.get(c, c) for c in value)

    def _value(self, identity: Identity, name: str) -> str | None:
        b = identity.binding(name)
        # One non-empty value, or the id would be ambiguous; fail closed.
        if not b.present or len(b.values) != 1 or not b.values[0]:
            return None
        return self._encode(b.values[0])

    def decide(self, identity: Identity, client_id: str) -> ClientIdDecision:
        """Map the client's id to the upstream id, or refuse it."""
        if client_id == "":
            # The broker assigns a unique id (v5 §3.1.3.1) or the session is clean
            # (3.1.1 §3.1.3.1): nothing to take over.
            return ClientIdDecision("")
        if self.cfg.mode == "derive":
            out: list[str] = []
            for literal, name, _, _ in self._parts:
                out.append(literal)
                if name is None:
                    continue
                if name == "client_id":
                    out.append(client_id)
                    continue
                value = self._value(identity, name)
                if value is None:
                    return ClientIdDecision(None, Reason.CLIENT_ID_UNAVAILABLE)
                out.append(value)
            return ClientIdDecision("".join(out))
        pattern: list[str] = []
        for literal, name, _, _ in self._parts:
            pattern.append(re.escape(literal))
            if name is None:
                continue
            if name == "client_id":
                pattern.append(".*")
                continue
            value = self._value(identity, name)
            if value is None:
                return ClientIdDecision(None, Reason.CLIENT_ID_UNAVAILABLE)
            pattern.append(re.escape(value))
        if re.fullmatch("".join(pattern), client_id, flags=re.DOTALL):
            return ClientIdDecision(client_id)
        return ClientIdDecision(None, Reason.CLIENT_ID_MISMATCH)
