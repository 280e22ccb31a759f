"""The benchmark's trivial apps, one per variant, each served alone (uvicorn, or gunicorn workers).

``python -m bench.apps VARIANT PORT`` serves one variant with uvicorn; ``bench.apps:app`` is the
same for gunicorn, the variant taken from ``BENCH_VARIANT``. Every variant has the same routes:
``GET /ping`` (the measured route), ``GET /items/{item_id}``, ``GET /boom`` (raises) and
``GET /_bench/info`` (variant, fast-path state, capture_error timings). ``LABELS`` says what
each variant runs; the table prints those labels.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from bench import serve

API_KEY = "bench-viewer-key"
TRIVIAL_PATH = "/ping"
BOOM_PATH = "/boom"
INFO_PATH = "/_bench/info"

LABELS = {
    "bare": "bare FastAPI (no telemetry)",
    "sizewise": "instrument(app) defaults (10 % parent-based sampling, fast path on)",
    "public": "instrument(app), SIZEWISE_FASTPATH=0 (public OTel path)",
    "contrib": "FastAPIInstrumentor defaults (SDK default sampler, receive/send spans) + PrometheusMetricReader",
    "contrib_tuned": "FastAPIInstrumentor tuned (10 % parent-based, exclude_spans=receive,send, "
                     "stable HTTP semconv) + PrometheusMetricReader",
    "native": "FastAPI native telemetry (global SDK providers, 10 % parent-based, PrometheusMetricReader)",
    "pfi": "prometheus-fastapi-instrumentator defaults (metrics only)",
    "starlette_exporter": "starlette-exporter PrometheusMiddleware defaults (metrics only)",
    "layer": "(diagnostic) sizewise HTTP layer alone",
}
VARIANTS = tuple(LABELS)
# What the sizewise variants stamp on /_bench/info; the bench fails a row whose state is wrong.
_STATE: dict[str, Any] = {"capture_us": [], "capture_cpu_us": []}


def trivial_app(**kwargs: Any) -> FastAPI:
    app = FastAPI(title="bench", **kwargs)

    @app.get(TRIVIAL_PATH)
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get(BOOM_PATH)
    async def boom() -> dict[str, str]:
        raise ValueError("could not convert string to float: 'x'")

    @app.get(INFO_PATH)
    async def info() -> dict[str, Any]:
        found = {k: list(v) if isinstance(v, list) else v for k, v in _STATE.items()}
        return found | {"gc_frozen": gc.get_freeze_count()}

    return app


def discarding_span_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            Discard.exported += len(spans)
            return SpanExportResult.SUCCESS

    return Discard()


def _span_exporters() -> list[Any]:
    """Spans go to the collector when an OTLP endpoint is set (gunicorn rows), else are discarded
    after the usual BatchSpanProcessor, so a sampled span pays its full export path either way."""
    return [] if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else [discarding_span_exporter()]


def _time_capture(handle: Any) -> None:
    """Time the tracker's request-path hand-off (what an escaping exception costs the request)."""
    tracker = handle.tracker
    if tracker is None:
        return
    inner = tracker.capture_request_exception
    wall: list[float] = _STATE["capture_us"]
    cpu: list[float] = _STATE["capture_cpu_us"]  # the request thread's CPU: no waiting for the GIL
    lock = threading.Lock()

    def timed(exc: BaseException, scope: Any) -> Any:
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            return inner(exc, scope)
        finally:
            t1, c1 = time.perf_counter(), time.thread_time()
            with lock:
                if len(wall) < 200_000:
                    wall.append((t1 - t0) * 1e6)
                    cpu.append((c1 - c0) * 1e6)

    tracker.capture_request_exception = timed


def _gc_stats() -> None:
    """``BENCH_GC_STATS=1``: count collections per generation and their time (bench/figures.py gc)."""
    stats: dict[str, Any] = {"collections": [0, 0, 0], "ms": 0.0}
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        stats["collections"][info["generation"]] += 1
        stats["ms"] += (time.perf_counter() - started[0]) * 1e3

    gc.callbacks.append(callback)
    _STATE["gc"] = stats


def _fastpath_state() -> str:
    try:
        from sizewise_otel.fastpath import detect
    except ImportError:
        return "unknown (no sizewise_otel.fastpath)"
    found = detect.status()
    return "on" if found.enabled else f"off: {found.reason}"


def _prometheus_route(app: FastAPI) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from starlette.responses import Response

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _sdk_providers(sampler: Any = None) -> tuple[Any, Any]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tp = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(discarding_span_exporter()))
    return tp, MeterProvider(metric_readers=[PrometheusMetricReader()])


def _ten_percent() -> Any:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    return ParentBased(TraceIdRatioBased(0.1))


def build(variant: str) -> FastAPI:
    _STATE["variant"] = variant
    if os.environ.get("BENCH_GC_STATS") == "1":
        _gc_stats()
    if variant == "bare":
        return trivial_app()
    if variant in ("sizewise", "public"):
        from sizewise_otel.instrumentation import instrument
        from sizewise_otel.settings import load_settings
        from sizewise_otel.telemetry import configure_telemetry

        app = trivial_app()
        settings = load_settings()
        configure_telemetry(settings, span_exporters=_span_exporters())
        _time_capture(instrument(app, settings=settings))
        _STATE["fastpath"] = _fastpath_state()
        return app
    if variant == "layer":
        from sizewise_otel.instrumentation import _instrument_http_server
        from sizewise_otel.settings import load_settings
        from sizewise_otel.telemetry import configure_telemetry

        app = trivial_app()
        _instrument_http_server(app, configure_telemetry(load_settings(), span_exporters=_span_exporters()))
        return app
    if variant in ("contrib", "contrib_tuned"):
        if variant == "contrib_tuned":
            os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "http"
        from opentelemetry import metrics, trace
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        tp, mp = _sdk_providers(_ten_percent() if variant == "contrib_tuned" else None)
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(mp)
        app = trivial_app()
        _prometheus_route(app)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp,
                                           exclude_spans=["receive", "send"] if variant == "contrib_tuned" else None)
        return app
    if variant == "native":
        # FastAPI >= 0.142 records spans and http.server.request.duration itself once global
        # providers exist (fastapi/telemetry/_asgi.py NativeTelemetry.enabled); defaults otherwise.
        from opentelemetry import metrics, trace

        tp, mp = _sdk_providers(_ten_percent())
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(mp)
        app = trivial_app()
        _prometheus_route(app)
        native = getattr(app, "_native_telemetry", None)
        _STATE["native"] = bool(native is not None and native.enabled())
        return app
    if variant == "pfi":
        from prometheus_fastapi_instrumentator import Instrumentator

        app = trivial_app()
        Instrumentator().instrument(app).expose(app)
        return app
    if variant == "starlette_exporter":
        from starlette_exporter import PrometheusMiddleware, handle_metrics

        app = trivial_app()
        app.add_middleware(PrometheusMiddleware)
        app.add_route("/metrics", handle_metrics)
        return app
    raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


__getattr__ = serve.module_app(build, globals())  # gunicorn: bench.apps:app


def main(argv: list[str]) -> None:
    os.environ.setdefault("SIZEWISE_API_KEYS", f"viewer:{API_KEY}")
    serve.run(build, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
