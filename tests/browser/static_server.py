"""A loopback HTTP server for the browser tests' own pages and the MQTT.js bundle."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web

from tests.browser.browser import WEB_DIR

PAGES = Path(__file__).with_name("pages")
MQTT_BUNDLE = WEB_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"


class StaticServer:
    """Serves ``pages/`` and ``/mqtt.min.js`` on 127.0.0.1 from its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticServer:
        self._thread.start()

        async def boot() -> int:
            async def bundle(request: web.Request) -> web.FileResponse:
                return web.FileResponse(MQTT_BUNDLE)

            app = web.Application()
            app.router.add_get("/mqtt.min.js", bundle)
            app.router.add_static("/", PAGES)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port: int = self._runner.addresses[0][1]
            return port

        self.port = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
