"""Coexistence scenarios for tests/unit/test_coexistence.py, each process fresh (global providers and
Sentry's patches are process-wide): ``python -m tests.unit.coexist_scenarios host|bare``.

``host``: the service set its own SDK TracerProvider and MeterProvider before SizeWise; ``bare``: it did
not (SizeWise's providers are the global ones). Prints one JSON line: per scenario, the request count on
``/metrics`` per route, the SERVER spans per route in every span pipeline, what the service's own meter
provider saw, and the ``coexistence`` log lines.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import structlog
from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from sizewise_otel import instrument, telemetry
from sizewise_otel.settings import Settings

SETTINGS = Settings(otel_traces_sampler="always_on", otel_exporter_otlp_endpoint="", error_store_url="sqlite://")
NATIVE = "telemetry" in FastAPI.__init__.__code__.co_varnames  # FastAPI's native telemetry (>= 0.142)


def _app(route: str, **kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)

    @app.get(route)
    def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get(f"{route}/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    return app


def _metrics_counts(text: str) -> dict[str, float]:
    """``http_server_request_duration_seconds_count`` summed per route over every line (every scope)."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("http_server_request_duration_seconds_count{") and 'http_route="' in line:
            route = line.split('http_route="')[1].split('"')[0]
            counts[route] = counts.get(route, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _server_spans(exporter: InMemorySpanExporter) -> dict[str, int]:
    telemetry.get_telemetry().tracer_provider.force_flush()  # SizeWise's exporters sit behind batch processors
    spans: dict[str, int] = {}
    for span in exporter.get_finished_spans():
        if span.kind is SpanKind.SERVER:
            route = str((span.attributes or {}).get("http.route"))
            spans[route] = spans.get(route, 0) + 1
    return spans


def _reader_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    """What a service's own MeterProvider recorded of ``http.server.request.duration``, per route."""
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "http.server.request.duration":
                    for point in metric.data.data_points:
                        route = str(point.attributes.get("http.route"))
                        counts[route] = counts.get(route, 0) + point.count
    return counts


def _instrument(app: FastAPI) -> tuple[Any, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        handle = instrument(app, settings=SETTINGS)
    lines = [{k: v for k, v in e.items() if k not in ("event", "log_level")}
             for e in logs if e.get("event") == "coexistence"]
    return handle, lines


def _drive(app: FastAPI, route: str, ok: int = 2, boom: int = 1) -> str:
    """``ok`` good requests and ``boom`` failing ones; returns the text of GET /metrics."""
    with TestClient(app, raise_server_exceptions=False) as http:
        for _ in range(ok):
            assert http.get(route).status_code == 200
        for _ in range(boom):
            assert http.get(f"{route}/boom").status_code == 500
        return http.get("/metrics").text


def host() -> dict[str, Any]:
    resource = Resource.create({"service.name": "host-service"})
    host_spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(host_spans))
    trace.set_tracer_provider(tp)
    host_reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[host_reader], resource=resource))
    ours = InMemorySpanExporter()
    tel = telemetry.configure_telemetry(SETTINGS, span_exporters=[ours])
    out: dict[str, Any] = {"native": NATIVE, "adopted": tel.tracer_provider is tp}

    plain = _app("/plain")
    _, logs = _instrument(plain)
    text = _drive(plain, "/plain")
    out["plain"] = {"logs": logs}

    contrib = _app("/contrib")
    FastAPIInstrumentor.instrument_app(contrib)  # the service's own, into its own (global) providers
    handle, logs = _instrument(contrib)
    text = _drive(contrib, "/contrib")
    out["contrib"] = {"logs": logs}
    during = (_metrics_counts(text), _server_spans(host_spans), _server_spans(ours), _reader_counts(host_reader))
    handle.uninstrument()
    with TestClient(contrib) as http:
        assert http.get("/contrib").status_code == 200
    out["after_uninstrument"] = {"host_reader": _reader_counts(host_reader), "host_spans": _server_spans(host_spans)}
    out["metrics"], out["host_spans"], out["our_spans"], out["host_reader"] = during
    out["span_service_names"] = sorted({str(s.resource.attributes.get("service.name"))
                                        for s in host_spans.get_finished_spans()})
    return out


def bare() -> dict[str, Any]:
    ours = InMemorySpanExporter()
    telemetry.configure_telemetry(SETTINGS, span_exporters=[ours])
    out: dict[str, Any] = {"native": NATIVE}

    plain = _app("/plain")
    out["plain"] = {"logs": _instrument(plain)[1]}
    text = _drive(plain, "/plain")

    contrib = _app("/contrib")
    FastAPIInstrumentor.instrument_app(contrib)  # default providers: the global ones, SizeWise's
    out["contrib"] = {"logs": _instrument(contrib)[1]}
    _drive(contrib, "/contrib")

    native_spans = InMemorySpanExporter()
    native_reader = InMemoryMetricReader()
    if NATIVE:  # FastAPI's native telemetry with the app's own providers
        native_tp = TracerProvider()
        native_tp.add_span_processor(SimpleSpanProcessor(native_spans))
        native = _app("/native", telemetry={"tracer_provider": native_tp,
                                            "meter_provider": MeterProvider(metric_readers=[native_reader])})
    else:
        native = _app("/native")
    out["native_app"] = {"logs": _instrument(native)[1]}
    _drive(native, "/native")
    out["native_spans"], out["native_reader"] = _server_spans(native_spans), _reader_counts(native_reader)

    from prometheus_fastapi_instrumentator import Instrumentator

    pfi = _app("/pfi")
    Instrumentator().instrument(pfi).expose(pfi)
    out["pfi"] = {"logs": _instrument(pfi)[1],
                  "metrics_routes": sum(getattr(r, "path", "") == "/metrics" for r in pfi.router.routes)}
    pfi_text = _drive(pfi, "/pfi")
    out["pfi"]["own_requests_total"] = sum(
        float(line.rsplit(" ", 1)[1]) for line in pfi_text.splitlines()
        if line.startswith("http_requests_total{") and 'handler="/pfi' in line)

    import sentry_sdk
    from sentry_sdk.transport import Transport

    envelopes: list[Any] = []

    class Memory(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            envelopes.append(envelope)

    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Memory(), traces_sample_rate=1.0)
    sentry = _app("/sentry")
    out["sentry"] = {"logs": _instrument(sentry)[1]}
    text = _drive(sentry, "/sentry")
    sentry_sdk.flush()
    items = [item for env in envelopes for item in env.items]
    errors = [item.payload.json for item in items if item.headers.get("type") == "event"]
    out["sentry"]["errors"] = [e["exception"]["values"][-1]["type"] for e in errors]
    out["sentry"]["transactions"] = sum(item.headers.get("type") == "transaction" for item in items)

    out["metrics"] = {**_metrics_counts(text), **{k: v for k, v in _metrics_counts(pfi_text).items()
                                                  if k.startswith("/pfi")}}
    out["our_spans"] = _server_spans(ours)
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps({"host": host, "bare": bare}[sys.argv[1]]()))
