"""Typed keys of the aiohttp applications' state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.server.app import Gateway

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
