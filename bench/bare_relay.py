"""A bare byte-copying relay: WSS in (aiohttp, TLS 1.3), TCP out to the broker, no parsing.

The reference the gateway is measured against (issue 7): the same transport work as the
gateway (TLS termination, WebSocket framing, one upstream TCP connection per client,
bounded buffers both ways) and nothing else. WebSocket messages from the client are
written upstream as they are; each read from the broker (up to 64 KiB, whatever the
kernel has) becomes one WebSocket frame, so MQTT packets may be split or coalesced
across frames, which MQTT over WebSockets allows (MQTT 5 spec 6.0).

Run: .venv/bin/python bench/bare_relay.py --port P --upstream 127.0.0.1:1883 \\
        --certfile server.pem --keyfile server.key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import ssl

from aiohttp import WSMsgType, web

READ_SIZE = 64 * 1024
# Same bound as the gateway's [limits] write_buffer_high default.
WRITE_BUFFER_HIGH = 256 * 1024


def server_ssl(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


async def _broker_to_client(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            await ws.send_bytes(data)
    await ws.close()


def make_handler(host: str, port: int) -> web.Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("mqtt", "mqttv3.1"), compress=False, max_msg_size=0)
        await ws.prepare(request)
        reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        down = asyncio.create_task(_broker_to_client(reader, ws))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.BINARY:
                    break
                writer.write(msg.data)
                if writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await down
        return ws

    return handler


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    app = web.Application()
    app.router.add_get("/mqtt", make_handler(host, int(port)))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", args.port, ssl_context=server_ssl(args.certfile, args.keyfile)
    )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port of the broker's TCP listener")
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--uvloop", action="store_true", help="use uvloop if installed")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
