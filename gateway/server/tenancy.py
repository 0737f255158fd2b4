"""Organizations (issue 6, item 1): the org of a session, its mount and its own policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.acl import Policy, PolicyError
from gateway.config import GatewayConfig
from gateway.core.mount import TopicMount, render_mount
from gateway.identity import Identity


@dataclass(frozen=True, slots=True)
class TenantPlacement:
    """Where an authenticated identity lives: its org, mount and policy."""

    org: str
    mount: TopicMount
    policy: Policy
    upstream_client_id: str


class TenantRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Loaded:
    policy: Policy
    text: str
    mtime: float | None


class TenantPolicies:
    """Per-org policy files, loaded on first use and reloaded when they change."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tenancy = config.tenancy
        self._loaded: dict[str, _Loaded] = {}

    def path_for(self, org: str) -> Path | None:
        org_cfg = self.tenancy.orgs.get(org)
        if org_cfg is not None and org_cfg.policy is not None:
            return self.config.path(org_cfg.policy)
        if self.tenancy.policies_dir is not None:
            candidate = self.config.path(self.tenancy.policies_dir) / f"{org}.json"
            if candidate.exists():
                return candidate
        return None

    def policy_for(self, org: str) -> Policy | None:
        """The org's own policy, or None when it uses the default one.

        Raises TenantRefused when the org's file exists but is not a valid policy: an
        org whose policy cannot be read is refused, never given the default's rights.
        """
        loaded = self._loaded.get(org)
        if loaded is not None:
            return loaded.policy
        path = self.path_for(org)
        if path is None:
            return None
        loaded = self._load(path)
        self._loaded[org] = loaded
        return loaded.policy

    def install(self, org: str, policy: Policy, text: str, *, persist: bool) -> None:
        """An org's own policy from the fleet (server/fleet sync): in force for the org's
        new sessions at once and, with ``persist``, written (atomically) where the org's
        file is read from, so a restart starts from it."""
        path = self.path_for(org)
        if path is None and self.tenancy.policies_dir is not None:
            path = self.config.path(self.tenancy.policies_dir) / f"{org}.json"
        if persist and path is not None:
            from gateway.server.admin_api import write_atomically

            write_atomically(path, text)
        # The file's time as it is now: only a later edit of it replaces this policy.
        mtime: float | None = None
        if path is not None:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                mtime = None
        self._loaded[org] = _Loaded(policy, text, mtime)

    def has_own_policy(self, org: str | None) -> bool:
        return org is not None and org in self._loaded

    def _load(self, path: Path) -> _Loaded:
        from gateway.server.admin_api import policy_from_text

        try:
            text = path.read_text("utf-8")
            mtime = path.stat().st_mtime
            return _Loaded(policy_from_text(text, str(path)), text, mtime)
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            raise TenantRefused("org_policy_invalid") from exc

    def changed(self) -> dict[str, Policy]:
        """Orgs whose policy file changed since it was loaded, with the new policy (a bad
        new file keeps the old policy, as for the default policy)."""
        out: dict[str, Policy] = {}
        for org, loaded in list(self._loaded.items()):
            path = self.path_for(org)
            if path is None:
                continue
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if mtime == loaded.mtime:
                continue
            try:
                fresh = self._load(path)
            except TenantRefused:
                loaded.mtime = mtime
                continue
            self._loaded[org] = fresh
            if fresh.policy.version != loaded.policy.version:
                out[org] = fresh.policy
        return out

    def place(
        self, identity: Identity, upstream_client_id: str, default: Policy
    ) -> TenantPlacement:
        """The org of ``identity`` (fail closed: no usable org, no session)."""
        binding = identity.binding(self.tenancy.binding)
        if not binding.usable or len(binding.values) != 1:
            raise TenantRefused("org_missing")
        org = binding.values[0]
        org_cfg = self.tenancy.orgs.get(org)
        if org_cfg is not None and org_cfg.issuers and identity.issuer not in org_cfg.issuers:
            raise TenantRefused("issuer_not_accepted_for_org")
        if self.tenancy.known_orgs_only and org not in self.tenancy.orgs:
            raise TenantRefused("unknown_org")
        policy = self.policy_for(org) or default
        # The org never holds "/" (a usable binding), so "org/id" cannot be forged by
        # another org's client id: client ids are namespaced per tenant.
        return TenantPlacement(
            org, render_mount(self.tenancy.mount, org), policy, f"{org}/{upstream_client_id}"
        )
