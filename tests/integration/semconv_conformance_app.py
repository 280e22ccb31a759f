"""Run in a fresh interpreter by test_semconv_conformance: the demo under load, every signal it emitted.

``python -m tests.integration.semconv_conformance_app SECONDS`` serves the demo and its materials
service (uvicorn on pre-bound loopback sockets, so no port race) with DATABASE_URL, REDIS_URL and
OTEL_TRACES_SAMPLER from the environment, drives the demo's own load generator (calculations, cache
hits and misses, invalid input, unknown ids, real 500s), each kind of answer once more on purpose
(the random load may draw none of a kind) and the monitoring endpoints, and prints one
``RESULT {json}`` line: the SDK's metric data as an in-memory reader collected it (OTel names, units,
kinds, attribute keys, bucket bounds: what OTLP carries), every finished span with its event keys,
the resource's keys and the ``GET /metrics`` text.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import time
from typing import Any

import httpx
import uvicorn
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Observables evaluated on their catalog tier: a collection before the health checks first ran caches
# an empty answer for a while, so the run waits (bounded) until /metrics shows these.
AWAITED_FAMILIES = ("sizewise_health_status{",)
AWAIT_SECONDS = 20.0
MONITORING_PATHS = ("/health", "/livez", "/readyz", "/dashboard/overview", "/dashboard/widget/system_cpu",
                    "/errors/summary", "/errors/groups", "/errors/no-such-id", "/metrics")


def _fixed_requests() -> list[tuple[str, str, dict[str, Any] | None, int]]:
    """Each kind of answer once whatever the random load drew: (method, path, body, expected status)."""
    from sizewise_otel.demo import hvac

    body = hvac.sample_request(random.Random(19), "round_duct")
    return [("POST", "/api/hvac/calculate", body, 201),
            ("POST", "/api/hvac/calculate", body, 200),  # the same request again: answered from the cache
            ("POST", "/api/hvac/calculate", {"calculation_type": "round_duct"}, 422),
            ("GET", "/api/hvac/calculations/987654321", None, 404),
            ("POST", "/api/hvac/import", {"csv": "round_duct,n/a,0.1"}, 500)]


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _kind(data: Any) -> str:
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "updowncounter"
    if isinstance(data, Histogram):
        return "histogram"
    if isinstance(data, Gauge):
        return "gauge"
    return type(data).__name__


def _metrics(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                entry = out.setdefault((m.name, sm.scope.name), {
                    "name": m.name, "unit": m.unit, "kind": _kind(m.data), "scope": sm.scope.name,
                    "attributes": set(), "buckets": None, "points": 0})
                for point in m.data.data_points:
                    entry["attributes"].update(point.attributes or {})
                    entry["points"] += 1
                    if isinstance(m.data, Histogram):
                        entry["buckets"] = list(point.explicit_bounds)
    return [{**e, "attributes": sorted(e["attributes"])} for e in out.values()]


def _spans(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [{"name": s.name, "kind": s.kind.name,
             "scope": s.instrumentation_scope.name if s.instrumentation_scope else "",
             "attributes": sorted(s.attributes or {}),
             "events": [{"name": e.name, "attributes": sorted(e.attributes or {})} for e in s.events]}
            for s in exporter.get_finished_spans()]


async def _serve(seconds: float) -> dict[str, Any]:
    from sizewise_otel import telemetry
    from sizewise_otel.demo import create_app
    from sizewise_otel.demo.load import run_load
    from sizewise_otel.demo.materials import create_materials_app
    from sizewise_otel.fastpath import status
    from sizewise_otel.settings import get_settings

    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tel = telemetry.configure_telemetry(get_settings(), readers=[reader], span_exporters=[exporter])
    msock, asock = _listener(), _listener()
    os.environ["MATERIALS_SERVICE_URL"] = f"http://127.0.0.1:{msock.getsockname()[1]}"
    get_settings.cache_clear()
    servers = [uvicorn.Server(uvicorn.Config(create_materials_app(), log_level="warning")),
               uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", access_log=False))]
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, (msock, asock), strict=True)]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)
            raise RuntimeError("a server stopped before it started")
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{asock.getsockname()[1]}"
    stats = await run_load(base, rate=25.0, duration=seconds, concurrency=4, seed=19)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        fixed = [((await client.request(method, path, json=body)).status_code, expected)
                 for method, path, body, expected in _fixed_requests()]
        answers = {path: await client.get(path) for path in MONITORING_PATHS}
        answered = {path: r.status_code for path, r in answers.items()}
        # Which check failed, should /health not answer 200 (a loaded CI machine once made it so).
        health_failed = ""
        if answered["/health"] != 200:
            from sizewise_otel.health import get_health_monitor

            checks = (await get_health_monitor().get_overall_health())["checks"]
            health_failed = {key: [(e["health"], e.get("output")) for e in entries] for key, entries in checks.items()
                             if any(e["health"] != "healthy" for e in entries)}
        deadline = time.monotonic() + AWAIT_SECONDS
        while True:
            metrics_text = (await client.get("/metrics")).text
            if all(f in metrics_text for f in AWAITED_FAMILIES) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    tel.tracer_provider.force_flush()
    result = {
        "fastpath": status().enabled, "load": dict(stats.by_status), "fixed": fixed,
        "answered": answered, "health_failed": health_failed,
        "metrics": _metrics(reader), "spans": _spans(exporter),
        "resource": sorted(tel.resource.attributes), "metrics_text": metrics_text,
    }
    for s in servers:
        s.should_exit = True
    await asyncio.wait(tasks, timeout=10)
    return result


def main() -> None:
    result = asyncio.run(_serve(float(sys.argv[1])))
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)  # background monitors (health, error writer) need not wind down: the data is out


if __name__ == "__main__":
    main()
