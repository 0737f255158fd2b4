"""TLS contexts: TLS 1.3 only towards clients, verified TLS towards the broker."""

from __future__ import annotations

import ssl


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The client-facing context: TLS 1.3 only (issue 2: a TLS 1.2 ClientHello is refused).

    TLS 1.3 removes the legacy cipher suites and renegotiation, and every browser and
    MQTT client library released since 2019 speaks it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def reload_cert_chain(ctx: ssl.SSLContext, certfile: str, keyfile: str) -> None:
    """Replace the certificate in place: new handshakes use it, open connections stay."""
    ctx.load_cert_chain(certfile, keyfile)


def upstream_context(
    cafile: str | None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx
