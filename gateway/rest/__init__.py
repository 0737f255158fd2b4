"""The REST publish bridge (issue 6, item 3): ``POST /v1/publish`` under the MQTT policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.rest.config import RestConfig

if TYPE_CHECKING:
    from gateway.rest.bridge import RestBridge

__all__ = ["RestBridge", "RestConfig"]


def __getattr__(name: str) -> Any:
    # The bridge needs gateway.config, which imports RestConfig from here: loaded lazily
    # so that the configuration can be imported first.
    if name == "RestBridge":
        from gateway.rest.bridge import RestBridge

        return RestBridge
    raise AttributeError(name)
