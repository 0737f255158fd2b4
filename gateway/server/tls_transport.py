"""asyncio's TLS transport, tuned for many idle connections (issue 7: 10,000, < 50 KB each).

Python 3.11's ``asyncio.sslproto.SSLProtocol`` gives every TLS connection its own
zero-filled receive buffer of ``max_size`` bytes (256 KiB), so every page of it is
resident even while the connection sleeps. The buffer only lives for one synchronous
step of the event loop: the socket transport asks for it (``get_buffer``), ``recv_into``
fills it, and ``buffer_updated`` copies the bytes into OpenSSL's incoming memory BIO
before doing anything else (``_SelectorSocketTransport._read_ready__get_buffer``; the
proactor's ``_feed_data_to_buffered_proto`` is just as synchronous). Nothing reads it
afterwards, so one buffer per thread serves every connection of that thread's loop.

uvloop brings its own TLS transport (which allocates without touching its buffer) and
is not affected.
"""

from __future__ import annotations

import asyncio.sslproto
import threading
from typing import Any

# TLS records are at most 16 KiB of plaintext (RFC 8446 section 5.1): one record per
# read, and ``SSLObject.read(max_size)`` in the copying read path allocates (then
# shrinks) a bytes object this big, so larger would only cost there. The gateway was
# measured at this size for throughput (bench/README.md); it is unchanged here.
TLS_READ_BUFFER = 16 * 1024


class _ThreadBuffer(threading.local):
    """One receive buffer per thread: a thread runs at most one event loop, and a loop
    uses the buffer synchronously, so connections never see each other's bytes. Per
    thread, not per process, because ``recv_into`` releases the GIL."""

    def __init__(self) -> None:
        self.buffer = bytearray(TLS_READ_BUFFER)
        self.view = memoryview(self.buffer)


_THREAD_BUFFER = _ThreadBuffer()


# What ``SSLProtocol.__init__`` sets on every instance (CPython 3.11). There are more
# than the 30 keys CPython 3.11 shares between the dicts of a class's instances, so each
# connection got a private dict of ~1.6 kB; as slots of the subclass they take ~0.3 kB
# and the dict keeps only the few set later. A name that is a class attribute of
# ``SSLProtocol`` (a default read before it is set) must not become a slot, which would
# hide it: those are filtered out, and so a Python whose SSLProtocol differs still works
# (an unused slot costs 8 bytes; an attribute without one goes to the dict, as before).
_INSTANCE_ATTRIBUTES = (
    "_app_protocol",
    "_app_protocol_is_buffer",
    "_app_reading_paused",
    "_app_state",
    "_app_transport",
    "_app_transport_created",
    "_app_writing_paused",
    "_conn_lost",
    "_eof_received",
    "_extra",
    "_incoming",
    "_incoming_high_water",
    "_incoming_low_water",
    "_loop",
    "_outgoing",
    "_outgoing_high_water",
    "_outgoing_low_water",
    "_server_hostname",
    "_server_side",
    "_ssl_buffer",
    "_ssl_buffer_view",
    "_ssl_handshake_timeout",
    "_ssl_reading_paused",
    "_ssl_shutdown_timeout",
    "_ssl_writing_paused",
    "_sslcontext",
    "_sslobj",
    "_state",
    "_transport",
    "_waiter",
    "_write_backlog",
    "_write_buffer_size",
)


class SharedBufferSSLProtocol(asyncio.sslproto.SSLProtocol):
    """``SSLProtocol`` whose receive buffer is the thread's shared one.

    ``SSLProtocol.__init__`` still allocates its own buffer; it is dropped at once, so
    the allocator hands the same 16 KiB chunk to the next connection: one resident
    buffer, not one per connection (~16 kB per idle connection, bench/idle.py).
    ``get_buffer`` keeps working unchanged: the shared buffer is ``max_size`` long, and
    if ``max_size`` were ever raised above it, ``get_buffer`` would allocate a private
    one for that connection, as before.
    """

    __slots__ = tuple(
        name for name in _INSTANCE_ATTRIBUTES if not hasattr(asyncio.sslproto.SSLProtocol, name)
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared: Any = _THREAD_BUFFER
        self._ssl_buffer = shared.buffer
        self._ssl_buffer_view = shared.view
        # Plaintext waiting for the TLS layer, almost always empty. An empty deque holds
        # a 64-slot block (760 bytes); an empty list 56. ``_do_write`` only appends,
        # reads and deletes item 0, and clears: a list does all of it, and the backlog
        # is a handful of writes at most, so ``del [0]`` costs nothing.
        backlog: Any = []
        self._write_backlog = backlog


def tune_asyncio_tls() -> None:
    """Every TLS connection asyncio opens in this process (the client listener and,
    with TLS upstream, the broker side) reads into one buffer per thread.

    ``selector_events`` and ``base_events`` look ``sslproto.SSLProtocol`` up when a
    connection is made, so replacing the module attribute is enough. Idempotent.
    """
    module: Any = asyncio.sslproto
    proto: Any = module.SSLProtocol
    if proto.max_size > TLS_READ_BUFFER:
        proto.max_size = TLS_READ_BUFFER
    if not issubclass(proto, SharedBufferSSLProtocol):
        module.SSLProtocol = SharedBufferSSLProtocol
