"""The starter policies shipped in the package (gateway/acl/templates/).

Each template is ``NAME.json`` (a policy whose ``description`` is its documentation)
and ``NAME.cases.json`` (its table of test cases, the format ``acl test`` reads).
``config/templates/`` in the repository holds identical copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

TEMPLATE_NAMES = ("permit-all", "notifications", "agent-pipelines", "chat-channels", "blank")


@dataclass(frozen=True, slots=True)
class PolicyTemplate:
    name: str
    policy_text: str
    cases_text: str

    @property
    def policy(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.policy_text)
        return doc

    @property
    def cases(self) -> list[dict[str, Any]]:
        cases: list[dict[str, Any]] = json.loads(self.cases_text)
        return cases

    @property
    def summary(self) -> str:
        """The first sentence of the description."""
        text = str(self.policy.get("description", ""))
        return text.split(". ")[0].rstrip(".") + "."


def _folder() -> Traversable:
    return resources.files("gateway.acl").joinpath("templates")


def get_template(name: str) -> PolicyTemplate:
    """A shipped template by name; KeyError when there is none."""
    if name not in TEMPLATE_NAMES:
        raise KeyError(name)
    folder = _folder()
    return PolicyTemplate(
        name,
        folder.joinpath(f"{name}.json").read_text("utf-8"),
        folder.joinpath(f"{name}.cases.json").read_text("utf-8"),
    )


def all_templates() -> list[PolicyTemplate]:
    return [get_template(n) for n in TEMPLATE_NAMES]
