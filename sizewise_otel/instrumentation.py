"""``instrument(app, ...)``: one call wires OTel and every SizeWise component into an app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.applications import Starlette

from sizewise_otel.alerts.evaluator import AlertEvaluator
from sizewise_otel.asgi import MonitoringMiddleware, RequestStats
from sizewise_otel.auth import KeyRing
from sizewise_otel.dashboard import PerformanceDashboard, initialize_performance_dashboard
from sizewise_otel.db import instrument_engine
from sizewise_otel.errors import ErrorTracker, initialize_error_tracker
from sizewise_otel.fastpath import instrumented_by_contrib
from sizewise_otel.health import HealthMonitor, initialize_health_monitor
from sizewise_otel.heap import freeze_startup_heap
from sizewise_otel.settings import Settings, ensure_semconv_opt_in, get_settings
from sizewise_otel.system import SystemMetrics
from sizewise_otel.telemetry import Telemetry, get_telemetry
from sizewise_otel.web import metrics_router

log = structlog.get_logger("sizewise.instrument")

# Probe and scrape endpoints are not traffic: they stay out of the HTTP metrics and spans.
UNMEASURED_PATHS = frozenset({"/metrics", "/livez", "/readyz"})
EXCLUDED_URLS = ",".join(f"{p}$" for p in sorted(UNMEASURED_PATHS))

# A bounded selection of the system-metrics instrumentation: series grow with the machine's CPUs,
# disks and interfaces, never with traffic.
SYSTEM_METRICS_CONFIG: dict[str, list[str] | None] = {
    "system.cpu.utilization": ["idle", "user", "system"],
    "system.memory.usage": ["used", "free", "cached"],
    "system.memory.utilization": ["used", "free", "cached"],
    "system.network.io": ["transmit", "receive"],
    "system.disk.io": ["read", "write"],
    "process.cpu.utilization": ["user", "system"],
    "process.memory.usage": None,
    "process.open_file_descriptor.count": None,
    "process.thread.count": None,
}


@dataclass
class Instrumentation:
    """The handle ``instrument()`` returns: every component it wired, and ``shutdown()``."""

    app: Any
    settings: Settings
    telemetry: Telemetry
    stats: RequestStats
    tracker: ErrorTracker | None
    monitor: HealthMonitor | None
    dashboard: PerformanceDashboard | None
    alerts: AlertEvaluator | None
    system: SystemMetrics
    extras: dict[str, Any] = field(default_factory=dict)
    _started: bool = False

    @property
    def components(self) -> list[Any]:
        return [c for c in (self.tracker, self.monitor, self.dashboard, self.alerts) if c is not None]

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for component in self.components:
            await component.initialize()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                await component.shutdown()

    async def shutdown(self) -> None:
        """Stop components and flush telemetry (call once at process exit)."""
        await self.stop()
        self.telemetry.meter_provider.force_flush()
        self.telemetry.tracer_provider.force_flush()


_instrumented_globally: set[str] = set()


def mark_instrumented(name: str) -> None:
    """Record that zero-code mode already instrumented a library globally."""
    _instrumented_globally.add(name)


def _instrument_once(name: str, fn: Any) -> None:
    if name not in _instrumented_globally:
        _instrumented_globally.add(name)
        fn()


def instrument_redis(client: Any, telemetry: Telemetry) -> None:
    """OTel CLIENT spans for a sync or asyncio Redis client (metrics come from InstrumentedCache).

    Lean wrappers (``sizewise_otel.redis_tracing``) instead of the contrib instrumentor: no span
    work under a non-sampled parent, attributes only for recording spans. Zero-code mode (the
    contrib instrumentor already patched redis-py globally) is left alone; a second call is a no-op.
    """
    from sizewise_otel.redis_tracing import redis_traced_globally, trace_redis_client

    if getattr(client, "_sizewise_instrumented", False) or redis_traced_globally():
        return
    trace_redis_client(client, telemetry.tracer_provider)
    with contextlib.suppress(AttributeError):
        client._sizewise_instrumented = True


def instrument_httpx(telemetry: Telemetry) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _instrument_once("httpx", lambda: HTTPXClientInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider))


def instrument_system(telemetry: Telemetry) -> None:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    _instrument_once("system", lambda: SystemMetricsInstrumentor(config=SYSTEM_METRICS_CONFIG).instrument(
        meter_provider=telemetry.meter_provider))


def _instrument_http_server(app: Any, telemetry: Telemetry) -> None:
    """The lean semconv HTTP layer (sizewise_otel.httpserver); see docs/performance.md.

    When ``instrument()`` is wiring the app (``app.state.sizewise``), the layer also counts
    requests/5xx for the error-rate gauge and hands exceptions and 5xx answers to the error
    tracker: one middleware does both. Zero-code mode keeps the contrib instrumentor: when it
    already wrapped the app, only ``MonitoringMiddleware`` is added for that counting and hand-off.
    FastAPI's own native telemetry is switched off for this app so no request is recorded twice.
    """
    from fastapi import FastAPI

    from sizewise_otel.httpserver import HTTPServerTelemetry, disable_native_fastapi_telemetry

    if getattr(app, "_sizewise_http", False):
        return  # an earlier call already did it
    app._sizewise_http = True
    handle = getattr(getattr(app, "state", None), "sizewise", None)
    stats = getattr(handle, "stats", None)
    tracker = getattr(handle, "tracker", None)
    if instrumented_by_contrib(app):
        # zero-code mode: the contrib instrumentor records the HTTP telemetry
        if stats is not None:
            app.add_middleware(MonitoringMiddleware, stats=stats, sink=tracker,
                               excluded=UNMEASURED_PATHS)
        return
    is_fastapi = isinstance(app, FastAPI)
    if is_fastapi:
        disable_native_fastapi_telemetry(app)
    app.add_middleware(HTTPServerTelemetry, tracer_provider=telemetry.tracer_provider,
                       meter_provider=telemetry.meter_provider, excluded_paths=UNMEASURED_PATHS,
                       fastapi=is_fastapi, stats=stats, errors=tracker)


def _include(app: Any, router: Any) -> None:
    if hasattr(app, "include_router"):
        app.include_router(router)
    else:
        app.router.routes.extend(router.routes)


def _wrap_lifespan(app: Starlette, handle: Instrumentation) -> None:
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        await handle.start()
        try:
            async with inner(app_) as state:
                if handle.settings.sizewise_gc_freeze:
                    # Start-up is over: what exists now lives until exit (see sizewise_otel/heap.py).
                    log.info("startup_heap_frozen", objects=freeze_startup_heap())
                yield state
        finally:
            await handle.stop()

    app.router.lifespan_context = lifespan


def instrument(app: Any, *, engine: Any = None, redis: Any = None, settings: Settings | None = None,
               http_dependencies: dict[str, str] | None = None) -> Instrumentation:
    """Wire OTel and the SizeWise components into a Starlette/FastAPI app. Idempotent per app."""
    existing = getattr(app.state, "sizewise", None)
    if existing is not None:
        return existing
    settings = settings or get_settings()
    ensure_semconv_opt_in(settings)
    telemetry = get_telemetry(settings)
    stats = RequestStats()
    app.state.sizewise_keyring = KeyRing(settings)

    tracker = initialize_error_tracker(settings, telemetry) if settings.error_tracking_enabled else None
    monitor = (initialize_health_monitor(settings, telemetry, engine=engine, redis=redis,
                                         http_dependencies=http_dependencies)
               if settings.health_monitoring_enabled else None)
    dashboard = (initialize_performance_dashboard(settings, telemetry, monitor=monitor, tracker=tracker)
                 if settings.performance_dashboard_enabled else None)
    alerts = AlertEvaluator(settings, telemetry)
    system = SystemMetrics()
    handle = Instrumentation(app, settings, telemetry, stats, tracker, monitor, dashboard, alerts, system)
    app.state.sizewise = handle

    if settings.metrics_collection_enabled:
        system.register(telemetry)
        telemetry.observe("sizewise.error.rate", lambda: [(stats.error_rate_percent(), {})])
        instrument_system(telemetry)
    # Request/5xx counting and the error hand-off (handle.stats, handle.tracker) ride on the HTTP
    # layer, or on MonitoringMiddleware in zero-code mode: see _instrument_http_server.
    _instrument_http_server(app, telemetry)
    instrument_httpx(telemetry)
    if engine is not None:
        instrument_engine(engine, telemetry)
    if redis is not None:
        instrument_redis(redis, telemetry)

    _include(app, metrics_router())
    for component in handle.components:
        _include(app, component.router())
    _wrap_lifespan(app, handle)
    return handle
