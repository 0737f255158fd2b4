"""Let a closed WebSocket's objects be freed when the connection ends, not at a GC.

aiohttp's ``WebSocketResponse.close()`` keeps the exception it met while sending the
close frame (``ClientConnectionResetError: Cannot write to closing transport`` whenever
the client left first, the usual end of an MQTT connection): ``ws._exception`` holds
the exception, whose traceback holds ``close()``'s frame, which holds ``ws``. That
cycle kept the whole connection (request, transports, parser, buffers) alive until
CPython's oldest generation was collected: after 1,000 connections closed, 1,050
``WebSocketResponse`` and ~48,000 objects (~16 MiB) were still there, and the new
connections' objects were laid out beside them (bench/README.md "Soak").

Dropping the traceback once the handler is done breaks the cycle; the exception itself
(``ws.exception()``) stays for whoever asks.
"""

from __future__ import annotations

from aiohttp import web

# An exception chain longer than this is not one aiohttp builds; the bound only keeps a
# (cyclic) __context__ chain from looping.
MAX_CHAIN = 8


def drop_close_traceback(resp: web.StreamResponse) -> None:
    """Clear the tracebacks of the exception a closed WebSocket keeps, and of its causes."""
    if not isinstance(resp, web.WebSocketResponse) or not resp.closed:
        return
    exc: BaseException | None = resp.exception()
    for _ in range(MAX_CHAIN):
        if exc is None:
            return
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
