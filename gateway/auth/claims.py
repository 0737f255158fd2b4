"""Claims become bindings (issue 3 §6): binding name ← claim path, dotted into nested claims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.identity import Identity

_ABSENT = object()


def claim_at(claims: Mapping[str, Any], path: str) -> object:
    """The value at ``path``; a key that itself contains dots (Auth0's namespaced
    ``https://example.com/org``) is matched whole before the path is split."""
    if path in claims:
        return claims[path]
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def binding_values(
    claims: Mapping[str, Any], mapping: Mapping[str, str | tuple[str, ...]]
) -> dict[str, object]:
    """Binding name → raw claim value for every mapped claim that is present.

    A path list gives alternatives, the first present one wins (``session_id`` or
    ``sid``). An empty path disables a binding. Missing claims are left out, and
    :class:`Identity` reports them as ``present=False``.
    """
    values: dict[str, object] = {}
    for name, paths in mapping.items():
        for path in (paths,) if isinstance(paths, str) else paths:
            if not path:
                continue
            value = claim_at(claims, path)
            if value is not _ABSENT:
                values[name] = value
                break
    return values


def identity_from_claims(
    claims: Mapping[str, Any],
    mapping: Mapping[str, str | tuple[str, ...]],
    *,
    issuer: str | None,
    client_id: str | None = None,
) -> Identity:
    """The immutable identity for verified claims; ``client_id`` comes from CONNECT."""
    values = binding_values(claims, mapping)
    values.pop("client_id", None)
    if client_id is not None:
        values["client_id"] = client_id
    sub = claims.get("sub")
    exp = claims.get("exp")
    return Identity.from_values(
        values,
        issuer=issuer,
        subject=sub if isinstance(sub, str) else None,
        expires_at=float(exp)
        if isinstance(exp, int | float) and not isinstance(exp, bool)
        else None,
    )
