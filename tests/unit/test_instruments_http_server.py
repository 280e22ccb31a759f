"""The lean HTTP server layer: semconv metrics, route templates, spans only when sampled, W3C context."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from opentelemetry import baggage
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from sizewise_otel.catalog import signal
from sizewise_otel.instruments.http_server import HTTPServerTelemetry, disable_native_fastapi_telemetry, route_template
from sizewise_otel.telemetry import build_views

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@dataclass
class Rig:
    app: Any
    client: TestClient
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    seen: dict[str, Any]

    def points(self, name: str = "http.server.request.duration") -> list[Any]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def point(self, **match: Any) -> Any:
        found = [p for p in self.points() if all(p.attributes.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (match, [dict(p.attributes) for p in self.points()])
        return found[0]


def build_app() -> tuple[FastAPI, dict[str, Any]]:
    app = FastAPI()
    seen: dict[str, Any] = {}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        seen["span"] = trace_api.get_current_span()
        seen["baggage"] = baggage.get_baggage("tenant")
        return {"item_id": item_id}

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"detail": "down"}, status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("the legacy parser")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418)

    @app.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {}

    @app.api_route("/any", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    async def anything() -> dict[str, str]:
        return {}

    sub = Starlette(routes=[Route("/status/{code}", lambda request: PlainTextResponse("ok"))])
    app.mount("/sub", sub)
    return app, seen


def make_rig(sampler: Sampler = ALWAYS_ON, *, lean: bool = True,
             temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
             **layer: Any) -> Rig:
    from opentelemetry.sdk.metrics import Histogram

    exemplar_filter = layer.pop("exemplar_filter", None)
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    meter_provider = MeterProvider(metric_readers=[reader], views=build_views(),  # as Telemetry does
                                   **({"exemplar_filter": exemplar_filter} if exemplar_filter else {}))
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app, seen = build_app()
    disable_native_fastapi_telemetry(app)
    app.add_middleware(HTTPServerTelemetry, tracer_provider=tracer_provider, meter_provider=meter_provider,
                       excluded_paths={"/metrics"}, lean=lean, **layer)
    client = TestClient(app, raise_server_exceptions=False)
    return Rig(app, client, reader, spans, seen)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = make_rig()
    with r.client:
        yield r


def test_duration_attributes_follow_stable_semconv(rig: Rig) -> None:
    assert rig.client.get("/items/7").status_code == 200
    p = rig.point(**{"http.route": "/items/{item_id}"})
    assert dict(p.attributes) == {
        "http.request.method": "GET", "http.route": "/items/{item_id}", "http.response.status_code": 200,
        "url.scheme": "http", "network.protocol.version": "1.1",
    }
    assert p.count == 1 and p.sum > 0
    assert list(p.explicit_bounds) == list(signal("http.server.request.duration").buckets)
    assert sum(p.bucket_counts) == 1


def test_route_template_not_raw_path_and_unmatched_has_no_route(rig: Rig) -> None:
    for i in range(5):
        rig.client.get(f"/items/{i}")
    assert rig.point(**{"http.route": "/items/{item_id}"}).count == 5
    rig.client.get("/no/such/page")
    rig.client.get("/another/unknown")
    unmatched = [p for p in rig.points() if "http.route" not in p.attributes]
    assert len(unmatched) == 1 and unmatched[0].count == 2
    assert unmatched[0].attributes["http.response.status_code"] == 404
    assert not any("/no/such" in str(v) for p in rig.points() for v in p.attributes.values())


def test_mounted_app_routes_keep_the_mount_prefix(rig: Rig) -> None:
    assert rig.client.get("/sub/status/201").status_code == 200
    assert rig.point(**{"http.route": "/sub/status/{code}"}).count == 1


def test_unknown_methods_become_other(rig: Rig) -> None:
    rig.client.request("BREW", "/any")
    rig.client.request("PATCH", "/any")
    methods = {p.attributes["http.request.method"] for p in rig.points()}
    assert methods == {"_OTHER", "PATCH"}
    span = next(s for s in rig.spans.get_finished_spans() if s.attributes["http.request.method"] == "_OTHER")
    assert span.attributes["http.request.method_original"] == "BREW"
    assert span.name.startswith("HTTP")


def test_server_errors_carry_error_type(rig: Rig) -> None:
    rig.client.get("/unavailable")
    p = rig.point(**{"http.route": "/unavailable"})
    assert p.attributes["http.response.status_code"] == 503 and p.attributes["error.type"] == "503"
    rig.client.get("/teapot")  # 4xx is the client's error, not the server's
    assert "error.type" not in rig.point(**{"http.route": "/teapot"}).attributes


def test_unhandled_exception_is_a_500_with_the_exception_type(rig: Rig) -> None:
    assert rig.client.get("/boom").status_code == 500
    p = rig.point(**{"http.route": "/boom"})
    assert p.attributes["http.response.status_code"] == 500
    assert p.attributes["error.type"] == "ValueError"
    (span,) = [s for s in rig.spans.get_finished_spans() if s.attributes.get("http.route") == "/boom"]
    assert span.status.status_code is trace_api.StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"  # error_type(): qualified outside builtins
    assert "exception.escaped" not in event.attributes  # deprecated in semconv
    assert "ValueError" in event.attributes["exception.stacktrace"]


def test_excluded_paths_record_nothing(rig: Rig) -> None:
    rig.client.get("/metrics")
    assert rig.points() == []
    assert rig.spans.get_finished_spans() == ()


def test_active_requests_are_counted_while_in_flight() -> None:
    r = make_rig()

    @r.app.get("/inflight")
    async def inflight() -> dict[str, float]:
        during = [p.value for p in r.points("http.server.active_requests")
                  if p.attributes == {"http.request.method": "GET", "url.scheme": "http"}]
        return {"during": during[0] if during else -1}

    with r.client:
        assert r.client.get("/inflight").json() == {"during": 1}
        after = r.points("http.server.active_requests")
    assert [p.value for p in after] == [0]


def test_one_server_span_with_semconv_attributes_and_no_internal_spans(rig: Rig) -> None:
    rig.client.get("/items/3?q=1", headers={"user-agent": "bench"})
    (span,) = rig.spans.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    attrs = dict(span.attributes)
    assert attrs["http.route"] == "/items/{item_id}" and attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == "/items/3" and attrs["url.query"] == "q=1"
    assert attrs["user_agent.original"] == "bench" and attrs["url.scheme"] == "http"
    assert rig.seen["span"].get_span_context().span_id == span.context.span_id


def test_span_only_when_sampled() -> None:
    r = make_rig(ALWAYS_OFF)
    with r.client:
        r.client.get("/items/1")
    assert r.spans.get_finished_spans() == ()
    # the handler still runs under a (non-recording) span context, so children are not sampled
    ctx = r.seen["span"].get_span_context()
    assert ctx.is_valid and not ctx.trace_flags.sampled
    assert r.point(**{"http.route": "/items/{item_id}"}).count == 1  # metrics regardless


def test_incoming_traceparent_and_baggage_are_honoured() -> None:
    r = make_rig(ParentBased(ALWAYS_OFF))  # only a sampled remote parent makes this span record
    with r.client:
        r.client.get("/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                                          "baggage": "tenant=acme"})
    (span,) = r.spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert r.seen["baggage"] == "acme"


@pytest.mark.parametrize("header", [
    "garbage", "00-zz-00f067aa0ba902b7-01", f"00-{'0' * 32}-{PARENT_ID}-01", f"ff-{TRACE_ID}-{PARENT_ID}-01",
    "00-" + "a" * 5000, "",
])
def test_malformed_traceparent_is_ignored(header: str) -> None:
    r = make_rig(ALWAYS_ON)
    with r.client:
        assert r.client.get("/items/1", headers={"traceparent": header, "baggage": "%%%,=;"}).status_code == 200
    (span,) = r.spans.get_finished_spans()
    assert span.parent is None  # a fresh root, the header ignored
    assert format(span.context.trace_id, "032x") != TRACE_ID


def test_lean_histogram_matches_the_sdk_instrument() -> None:
    results = []
    for lean in (True, False):
        r = make_rig(ALWAYS_OFF, lean=lean)
        with r.client:
            for path in ("/items/1", "/items/2", "/unavailable", "/nope", "/boom"):
                r.client.get(path)
        results.append({tuple(sorted(p.attributes.items())): (p.count, len(p.bucket_counts), list(p.explicit_bounds))
                        for p in r.points()})
    assert results[0] == results[1]


def test_delta_temporality_falls_back_to_the_sdk_instrument() -> None:
    from opentelemetry.sdk.metrics import Histogram

    r = make_rig(ALWAYS_OFF, temporality=AggregationTemporality.DELTA)
    delta = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    middleware = HTTPServerTelemetry(lambda *a: None, meter_provider=MeterProvider(metric_readers=[delta]))
    assert middleware.lean is None and middleware.duration is not None
    with r.client:
        r.client.get("/items/1")
    assert r.point(**{"http.route": "/items/{item_id}"}).count == 1


def test_native_fastapi_telemetry_is_switched_off() -> None:
    """FastAPI with native telemetry (0.165+): switched off, and back on by the undo. Before it there
    is nothing to switch: the app is left exactly as it was."""
    app = FastAPI()
    native = getattr(app, "_native_telemetry", None)
    was_enabled = native.enabled() if native is not None else None
    before = dict(vars(app))
    restore = disable_native_fastapi_telemetry(app)
    if native is None:
        assert not hasattr(app, "_telemetry") and vars(app) == before
        restore()
        assert vars(app) == before
        return
    assert not app._native_telemetry.enabled()
    restore()
    assert app._native_telemetry.enabled() == was_enabled


def test_route_template_helper() -> None:
    assert route_template({}, "") is None

    class R:
        path = "/a/{b}"

    assert route_template({"route": R(), "root_path": ""}, "") == "/a/{b}"
    assert route_template({"route": R(), "root_path": "/api"}, "") == "/api/a/{b}"
    assert route_template({"route": R(), "root_path": "/proxy"}, "/proxy") == "/a/{b}"
    mount = Mount("/static", app=PlainTextResponse("x"))
    assert route_template({"route": mount, "root_path": "/static"}, "") == "/static/{path}"


def test_instrument_http_server_is_idempotent_and_defers_to_zero_code() -> None:
    from sizewise_otel.fastpath import enabled, instrumented_by_contrib
    from sizewise_otel.instruments.http_server import instrument_http_server as _instrument_http_server
    from sizewise_otel.telemetry import get_telemetry

    app = FastAPI()
    _instrument_http_server(app, get_telemetry())
    first = [id(m) for m in app.user_middleware]
    _instrument_http_server(app, get_telemetry())
    assert [id(m) for m in app.user_middleware] == first  # the second call changes nothing
    # The fast layer where the fast path runs; the contrib FastAPI instrumentor otherwise.
    assert sum(1 for m in app.user_middleware if m.cls is HTTPServerTelemetry) == (1 if enabled() else 0)
    assert instrumented_by_contrib(app) != enabled()
    other = FastAPI()
    other._is_instrumented_by_opentelemetry = True  # what opentelemetry-instrument leaves behind
    _instrument_http_server(other, get_telemetry())
    assert not any(m.cls is HTTPServerTelemetry for m in other.user_middleware)


# --- exemplars ---------------------------------------------------------------------------------

def _exemplars(r: Rig) -> dict[str, list[Any]]:
    return {p.attributes.get("http.route", ""): list(p.exemplars) for p in r.points()}


def test_exemplars_point_at_the_request_span() -> None:
    r = make_rig(ALWAYS_ON)
    with r.client:
        r.client.get("/items/1")
    (span,) = r.spans.get_finished_spans()
    p = r.point(**{"http.route": "/items/{item_id}"})
    (exemplar,) = p.exemplars
    assert exemplar.trace_id == span.context.trace_id and exemplar.span_id == span.context.span_id
    assert exemplar.value == p.sum  # the one measurement
    assert exemplar.filtered_attributes == {}  # every measured attribute is on the point already
    assert span.start_time <= exemplar.time_unix_nano <= span.end_time
    # in the bucket the value was counted in
    index = next(i for i, b in enumerate(p.explicit_bounds) if exemplar.value <= b)
    assert p.bucket_counts[index] == 1


def test_exemplars_match_what_the_sdk_instrument_produces() -> None:
    shapes = []
    for lean in (True, False):
        r = make_rig(ALWAYS_ON, lean=lean)
        with r.client:
            for path in ("/items/1", "/items/2", "/items/3", "/unavailable", "/nope", "/boom"):
                r.client.get(path)
        by_span = {s.context.span_id: s for s in r.spans.get_finished_spans()}
        shape = {}
        for p in r.points():
            bounds = list(p.explicit_bounds)
            indexes = [next((i for i, b in enumerate(bounds) if e.value <= b), len(bounds)) for e in p.exemplars]
            # AlignedHistogramBucketExemplarReservoir: one per non-empty bucket, in bucket order
            assert indexes == [i for i, n in enumerate(p.bucket_counts) if n]
            assert all(by_span[e.span_id].context.trace_id == e.trace_id for e in p.exemplars)
            shape[tuple(sorted(p.attributes.items()))] = [
                (type(e), e.filtered_attributes, type(e.time_unix_nano)) for e in p.exemplars][:1]
        shapes.append(shape)
    assert shapes[0] == shapes[1]


def test_unsampled_requests_add_no_exemplars() -> None:
    r = make_rig(ParentBased(ALWAYS_OFF))
    with r.client:
        for i in range(20):
            r.client.get(f"/items/{i}")
        assert r.point(**{"http.route": "/items/{item_id}"}).exemplars == []
        # one sampled request (remote sampled parent) among unsampled ones: exactly its exemplar
        r.client.get("/items/99", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        r.client.get("/items/100", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
        (exemplar,) = r.point(**{"http.route": "/items/{item_id}"}).exemplars
    assert format(exemplar.trace_id, "032x") == TRACE_ID


def test_exemplars_follow_the_provider_exemplar_filter() -> None:
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter

    off = make_rig(ALWAYS_ON, exemplar_filter=AlwaysOffExemplarFilter())
    with off.client:
        off.client.get("/items/1")
        assert off.point(**{"http.route": "/items/{item_id}"}).exemplars == []
    on = make_rig(ALWAYS_OFF, exemplar_filter=AlwaysOnExemplarFilter())
    with on.client:
        on.client.get("/items/1")
        (exemplar,) = on.point(**{"http.route": "/items/{item_id}"}).exemplars
    assert exemplar.trace_id == on.seen["span"].get_span_context().trace_id  # the non-recording span's ids


def test_exemplars_are_bounded_latest_per_bucket_and_reset_per_collection() -> None:
    from sizewise_otel.fastpath import enabled

    r = make_rig(ALWAYS_ON)
    with r.client:
        for i in range(200):
            r.client.get(f"/items/{i}")
        p = r.point(**{"http.route": "/items/{item_id}"})
        buckets = len(p.explicit_bounds) + 1
        assert 1 <= len(p.exemplars) <= buckets
        # one per bucket, in bucket order, and the newest request's is among them (latest wins)
        indexes = [next((i for i, b in enumerate(p.explicit_bounds) if e.value <= b), buckets - 1)
                   for e in p.exemplars]
        assert indexes == sorted(set(indexes))
        last = max(r.spans.get_finished_spans(), key=lambda s: s.end_time)
        assert last.context.span_id in {e.span_id for e in p.exemplars}
        layer = r.app.middleware_stack
        while not isinstance(layer, HTTPServerTelemetry):
            layer = layer.app
        lean = layer.lean
        assert (lean is not None) == enabled()  # without the fast path: the SDK histogram and reservoir
        if lean is not None:
            point = next(iter(lean._points.values()))
            assert len(point.exemplars) == buckets  # the fixed slot array, however many requests
        # collected: the next collection carries only exemplars offered since (the SDK reservoir's reset)
        assert r.point(**{"http.route": "/items/{item_id}"}).exemplars == []
        r.client.get("/items/7")
        assert len(r.point(**{"http.route": "/items/{item_id}"}).exemplars) == 1


def test_each_reader_sees_exemplars_since_its_own_previous_collection() -> None:
    from opentelemetry.sdk.metrics import Histogram

    cumulative = {Histogram: AggregationTemporality.CUMULATIVE}
    readers = [InMemoryMetricReader(preferred_temporality=cumulative) for _ in range(2)]
    provider = MeterProvider(metric_readers=readers, views=build_views())
    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    app, _ = build_app()
    disable_native_fastapi_telemetry(app)
    app.add_middleware(HTTPServerTelemetry, tracer_provider=tracer_provider, meter_provider=provider)

    def exemplars(reader: InMemoryMetricReader) -> int:
        data = reader.get_metrics_data()
        return sum(len(p.exemplars) for rm in data.resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics if m.name == "http.server.request.duration" for p in m.data.data_points)

    with TestClient(app) as client:
        client.get("/items/1")
        assert exemplars(readers[0]) == 1
        assert exemplars(readers[0]) == 0
        assert exemplars(readers[1]) == 1  # not consumed by the other reader's collection


# --- request statistics and the error hand-off (formerly MonitoringMiddleware) -----------------

class Sink:
    def __init__(self) -> None:
        self.exceptions: list[tuple[str, int | None]] = []
        self.statuses: list[tuple[str, int]] = []

    def capture_request_exception(self, exc: BaseException, scope: dict[str, Any]) -> str:
        span = trace_api.get_current_span()  # captured while the request's span is current and open
        self.exceptions.append((type(exc).__name__, span.get_span_context().span_id if span.is_recording()
                                else None))
        return "e1"

    def capture_server_error_status(self, scope: dict[str, Any], status: int) -> None:
        self.statuses.append((scope["path"], status))


def test_one_layer_counts_requests_and_hands_errors_to_the_tracker() -> None:
    from sizewise_otel.instruments.http_stats import CAPTURED_KEY, RequestStats

    stats, sink = RequestStats(), Sink()
    r = make_rig(ALWAYS_ON, stats=stats, errors=sink)

    @r.app.get("/handled")
    async def handled(request: Request) -> JSONResponse:
        request.scope[CAPTURED_KEY] = True  # an exception handler already captured it
        return JSONResponse({}, status_code=503)

    with r.client:
        r.client.get("/items/1")
        r.client.get("/teapot")
        r.client.get("/metrics")  # excluded: not counted
        assert r.client.get("/boom").status_code == 500  # re-raised, answered by ServerErrorMiddleware
        r.client.get("/unavailable")
        assert r.client.get("/handled").status_code == 503
    assert (stats.total, stats.errors) == (5, 3)
    boom = next(s for s in r.spans.get_finished_spans() if s.attributes.get("http.route") == "/boom")
    assert sink.exceptions == [("ValueError", boom.context.span_id)]
    assert sink.statuses == [("/unavailable", 503)]
    assert not any(m.cls.__name__ == "MonitoringMiddleware" for m in r.app.user_middleware)


def test_instrument_uses_one_layer_and_zero_code_keeps_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    from sizewise_otel import instrument
    from sizewise_otel.fastpath import enabled, instrumented_by_contrib
    from sizewise_otel.instruments.http_stats import MonitoringMiddleware
    from sizewise_otel.settings import Settings

    app, _ = build_app()
    handle = instrument(app, settings=Settings(error_store_url="sqlite://"))
    if enabled():
        (layer,) = [m for m in app.user_middleware if m.cls is HTTPServerTelemetry]
        assert layer.kwargs["stats"] is handle.stats and layer.kwargs["errors"] is handle.tracker
        assert not any(m.cls is MonitoringMiddleware for m in app.user_middleware)
    else:  # public path: the contrib instrumentor traces, MonitoringMiddleware counts and hands off
        assert instrumented_by_contrib(app)
        assert not any(m.cls is HTTPServerTelemetry for m in app.user_middleware)
        (monitoring,) = [m for m in app.user_middleware if m.cls is MonitoringMiddleware]
        assert monitoring.kwargs["stats"] is handle.stats and monitoring.kwargs["sink"] is handle.tracker

    zero_code, _ = build_app()
    zero_code._is_instrumented_by_opentelemetry = True  # what opentelemetry-instrument leaves behind
    handle = instrument(zero_code, settings=Settings(error_store_url="sqlite://"))
    assert not any(m.cls is HTTPServerTelemetry for m in zero_code.user_middleware)
    (monitoring,) = [m for m in zero_code.user_middleware if m.cls is MonitoringMiddleware]
    assert monitoring.kwargs["stats"] is handle.stats
    with TestClient(zero_code, raise_server_exceptions=False) as client:
        client.get("/items/1")
        client.get("/unavailable")
    assert (handle.stats.total, handle.stats.errors) == (2, 1)


def test_last_chunk_is_sent_outside_the_request_context() -> None:
    """The server arms timers while the last chunk goes out (uvicorn's keep-alive), and they copy
    the current context: it must not be the request's, or every request's span outlives it. The
    response start (where servers write access logs) and what the app does after sending (a
    background task) stay under the request's span."""
    import asyncio

    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    spans = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        seen["after"] = trace_api.get_current_span()  # a background task runs here

    layer = HTTPServerTelemetry(app, tracer_provider=tracer_provider, meter_provider=meter_provider)

    async def server_send(message: dict[str, Any]) -> None:
        key = "last" if message["type"] == "http.response.body" and not message.get("more_body") else (
            "chunk" if message["type"] == "http.response.body" else "start")
        seen[key] = trace_api.get_current_span()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "http_version": "1.1",
             "scheme": "http", "query_string": b"", "root_path": ""}
    asyncio.run(layer(scope, receive, server_send))
    (span,) = spans.get_finished_spans()
    for key in ("start", "chunk", "after"):
        assert seen[key].get_span_context().span_id == span.context.span_id, key
    assert seen["last"] is trace_api.INVALID_SPAN
    assert trace_api.get_current_span() is trace_api.INVALID_SPAN
