"""The benchmark's apps, one per variant, each served alone by uvicorn in its own process.

``python -m bench.apps VARIANT PORT`` serves one of:

- ``bare``: a FastAPI app with one trivial route and no telemetry at all;
- ``sizewise``: the same app after ``instrument(app)`` at default settings (RED metrics, 10 %
  parent-based sampling, error tracking, health, dashboard, alerts), spans going to a discarding
  exporter through the usual BatchSpanProcessor so sampled spans pay their full export path;
- ``stock``: the same app with the stock OTel setup the issue measured: FastAPIInstrumentor
  (receive/send spans included), SDK default sampler (parent-based always-on), a
  BatchSpanProcessor, PrometheusMetricReader and a ``/metrics`` route;
- ``pfi``: the same app with prometheus-fastapi-instrumentator (metrics only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

API_KEY = "bench-viewer-key"
VARIANTS = ("bare", "sizewise", "stock", "pfi", "layer")
TRIVIAL_PATH = "/ping"


def trivial_app() -> FastAPI:
    app = FastAPI(title="bench")

    @app.get(TRIVIAL_PATH)
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    return app


def discarding_span_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            Discard.exported += len(spans)
            return SpanExportResult.SUCCESS

    return Discard()


def build(variant: str) -> FastAPI:
    app = trivial_app()
    if variant == "bare":
        return app
    if variant == "sizewise":
        from sizewise_otel.instrumentation import instrument
        from sizewise_otel.settings import load_settings
        from sizewise_otel.telemetry import configure_telemetry

        settings = load_settings()
        configure_telemetry(settings, span_exporters=[discarding_span_exporter()])
        instrument(app, settings=settings)
        return app
    if variant == "layer":  # diagnostic: the HTTP layer alone, none of the other components
        from sizewise_otel.instrumentation import _instrument_http_server
        from sizewise_otel.settings import load_settings
        from sizewise_otel.telemetry import configure_telemetry

        telemetry = configure_telemetry(load_settings(), span_exporters=[discarding_span_exporter()])
        _instrument_http_server(app, telemetry)
        return app
    if variant == "stock":
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
        from starlette.responses import Response

        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(discarding_span_exporter()))
        mp = MeterProvider(metric_readers=[PrometheusMetricReader()])
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(mp)

        @app.get("/metrics")
        def metrics_endpoint() -> Response:
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
        return app
    if variant == "pfi":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
        return app
    raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


def main(argv: list[str]) -> None:
    import uvicorn

    variant, port = argv[0], int(argv[1])
    os.environ.setdefault("SIZEWISE_API_KEYS", f"viewer:{API_KEY}")
    app = build(variant)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="on")


if __name__ == "__main__":
    main(sys.argv[1:])
