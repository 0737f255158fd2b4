"""A real OTLP receiver on loopback (HTTP/protobuf and gRPC) that keeps what it is sent.

Reusable by any test that points a gateway's exporter at it::

    receiver = OtlpReceiver().start()          # POST /v1/traces, /v1/metrics on 127.0.0.1
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    ...
    spans = receiver.wait_for(lambda spans: any(s.attributes.get("mqttgate.verdict") == "deny"
                                                for s in spans), timeout=5)
    receiver.stop()

The server runs on its own thread and event loop, so an exporter that posts from a
worker thread while the test's loop is blocked (a synchronous shutdown) never deadlocks.
Bodies are decoded with opentelemetry-proto, exactly what a collector would see.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes_dict(v.kvlist_value.values)
    return getattr(v, kind)


def attributes_dict(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, ...
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of one metric: ``value`` for sums and gauges, ``count``/``sum``
    and ``bucket_counts`` for histograms."""

    name: str
    kind: str  # "sum" | "gauge" | "histogram"
    attributes: dict[str, Any]
    value: float | None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    time_unix_nano: int = 0
    resource: dict[str, Any] = field(default_factory=dict)


def decode_traces(body: bytes) -> list[ReceivedSpan]:
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in req.resource_spans:
        resource = attributes_dict(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        start_time_unix_nano=s.start_time_unix_nano,
                        end_time_unix_nano=s.end_time_unix_nano,
                        attributes=attributes_dict(s.attributes),
                        status_code=s.status.code,
                        resource=resource,
                        scope=ss.scope.name,
                    )
                )
    return out


def decode_metrics(body: bytes) -> list[ReceivedPoint]:
    req = metrics_service_pb2.ExportMetricsServiceRequest()
    req.ParseFromString(body)
    out: list[ReceivedPoint] = []
    for rm in req.resource_metrics:
        resource = attributes_dict(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    for p in getattr(m, kind).data_points:
                        value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        out.append(
                            ReceivedPoint(
                                m.name,
                                kind,
                                attributes_dict(p.attributes),
                                value,
                                time_unix_nano=p.time_unix_nano,
                                resource=resource,
                            )
                        )
                elif kind == "histogram":
                    for hp in m.histogram.data_points:
                        out.append(
                            ReceivedPoint(
                                m.name,
                                kind,
                                attributes_dict(hp.attributes),
                                None,
                                count=hp.count,
                                sum=hp.sum,
                                bucket_counts=tuple(hp.bucket_counts),
                                time_unix_nano=hp.time_unix_nano,
                                resource=resource,
                            )
                        )
    return out


class _Store:
    """What both receivers keep; guarded by a lock (exporters post from their threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self.trace_requests = 0
        self.metric_requests = 0

    def add_spans(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.trace_requests += 1

    def add_points(self, points: list[ReceivedPoint]) -> None:
        with self._lock:
            self._points.extend(points)
            self.metric_requests += 1

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def points(self) -> list[ReceivedPoint]:
        with self._lock:
            return list(self._points)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._points.clear()

    def latest(self, name: str, **labels: Any) -> ReceivedPoint | None:
        """The newest point of metric ``name`` whose attributes include ``labels``."""
        best: ReceivedPoint | None = None
        for p in self.points():
            if p.name != name or any(p.attributes.get(k) != v for k, v in labels.items()):
                continue
            if best is None or p.time_unix_nano >= best.time_unix_nano:
                best = p
        return best

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 5.0
    ) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds; returns the spans, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"OTLP receiver: condition not met, {len(spans)} spans seen")
            time.sleep(0.01)

    async def wait_for_async(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 5.0
    ) -> list[ReceivedSpan]:
        """:meth:`wait_for` without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"OTLP receiver: condition not met, {len(spans)} spans seen")
            await asyncio.sleep(0.01)


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class OtlpReceiver(_Store):
    """OTLP/HTTP (protobuf) receiver on 127.0.0.1: ``url`` is the base endpoint."""

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        body = _decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        self.add_spans(decode_traces(body))
        resp = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=resp, content_type="application/x-protobuf")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = _decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        self.add_points(decode_metrics(body))
        resp = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=resp, content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]

    def start(self) -> OtlpReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class OtlpGrpcReceiver(_Store):
    """OTLP/gRPC receiver (TraceService and MetricsService) on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        store = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                store.add_spans(decode_traces(request.SerializeToString()))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                store.add_points(decode_metrics(request.SerializeToString()))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
