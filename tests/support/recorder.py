"""A recording TCP relay between the gateway and the broker: what the broker received."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.support.mosquitto import free_port


class RecordingRelay:
    """Listens on 127.0.0.1:``port`` and copies bytes to the broker, keeping a copy."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.to_broker = bytearray()
        self.from_broker = bytearray()
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sink: bytearray
    ) -> None:
        try:
            while data := await reader.read(65536):
                with self._lock:
                    sink.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_w, self.to_broker), self._pipe(up_r, writer, self.from_broker)
        )

    def start(self) -> RecordingRelay:
        self._thread.start()

        async def boot() -> asyncio.base_events.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._server = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(5)
        return self

    def received(self) -> bytes:
        with self._lock:
            return bytes(self.to_broker)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
