"""One TLS receive buffer per thread (gateway/server/tls_transport.py, issue 7 memory).

Many TLS connections read at once through the shared buffer; each must get exactly its
own bytes back, in order, and the server side must really be sharing the buffer.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import os
import ssl
from pathlib import Path
from typing import Any

from gateway.certs import make_dev_certs
from gateway.server.tls_transport import (
    TLS_READ_BUFFER,
    SharedBufferSSLProtocol,
    tune_asyncio_tls,
)
from gateway.tls import server_context

CLIENTS = 24
CHUNKS = 40
CHUNK = 9000  # not a divisor of the buffer: reads straddle TLS records


class Echo(asyncio.Protocol):
    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.seen.append(transport.get_extra_info("ssl_object") and transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def test_concurrent_tls_connections_each_get_their_own_bytes(tmp_path: Path) -> None:
    tune_asyncio_tls()
    assert asyncio.sslproto.SSLProtocol is SharedBufferSSLProtocol
    tune_asyncio_tls()  # idempotent
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER
    certs = make_dev_certs(tmp_path)
    sctx = server_context(str(certs.server_cert), str(certs.server_key))
    cctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    seen: list[Any] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(seen), "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]

    async def client(i: int) -> None:
        data = os.urandom(CHUNK * CHUNKS)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=cctx, server_hostname="localhost"
        )
        for k in range(CHUNKS):
            writer.write(data[k * CHUNK : (k + 1) * CHUNK])
            if k % 7 == i % 7:
                await asyncio.sleep(0)  # interleave the clients' writes
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(len(data)), 30)
        assert echoed == data, f"client {i} got bytes that are not its own"
        writer.close()
        await writer.wait_closed()

    try:
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    finally:
        server.close()
        await server.wait_closed()
    protocols = [t._ssl_protocol for t in seen]
    assert len(protocols) == CLIENTS
    assert all(isinstance(p, SharedBufferSSLProtocol) for p in protocols)
    assert len({id(p._ssl_buffer) for p in protocols}) == 1  # one buffer, not one each
    assert all(isinstance(p._write_backlog, list) for p in protocols)
    # What __init__ sets lives in slots: the instance dict keeps the few set later, well
    # under the 30 keys past which CPython gives every instance a private 1.6 kB dict.
    assert all(len(vars(p)) < 10 for p in protocols), sorted(vars(protocols[0]))
