"""The REST publish bridge (issue 6, item 3): ``POST /v1/publish`` under the MQTT policy."""

from gateway.rest.bridge import RestBridge
from gateway.rest.config import RestConfig

__all__ = ["RestBridge", "RestConfig"]
