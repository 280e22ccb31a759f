"""``instrument(app, ...)``: one call wires OTel and every SizeWise component into an app."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.applications import Starlette

from sizewise_otel.alerts.evaluator import AlertEvaluator
from sizewise_otel.dashboard import PerformanceDashboard, initialize_performance_dashboard
from sizewise_otel.errors import ErrorTracker, initialize_error_tracker
from sizewise_otel.fastpath import (
    detach_lean_histograms,
    restore_id_generators,
    uninstall_lean_otlp_encoder,
    warn_if_disabled,
)
from sizewise_otel.health import HealthMonitor, initialize_health_monitor
from sizewise_otel.instruments.http_client import instrument_httpx, uninstrument_httpx
from sizewise_otel.instruments.http_server import UNMEASURED_PATHS, instrument_http_server
from sizewise_otel.instruments.http_stats import RequestStats
from sizewise_otel.instruments.redis import instrument_redis
from sizewise_otel.instruments.registry import MARKS, PROCESS, Undo
from sizewise_otel.instruments.sql import instrument_engine
from sizewise_otel.instruments.system import SYSTEM_METRICS_CONFIG, SystemMetrics, instrument_system
from sizewise_otel.runtime.heap import freeze_startup_heap
from sizewise_otel.settings import Settings, ensure_semconv_opt_in, get_settings
from sizewise_otel.telemetry import Telemetry, get_telemetry
from sizewise_otel.web import coexist
from sizewise_otel.web.auth import KeyRing
from sizewise_otel.web.metrics import metrics_router
from sizewise_otel.web.routes import add_endpoints

# The per-traffic pieces are re-exported: bench/ and zero-code mode import them from here.
__all__ = ["SYSTEM_METRICS_CONFIG", "UNMEASURED_PATHS", "Instrumentation", "instrument", "instrument_httpx",
           "instrument_redis", "instrument_system", "mark_instrumented"]

log = structlog.get_logger("sizewise.instrument")


@dataclass
class Instrumentation:
    """The handle ``instrument()`` returns: every component it wired, ``shutdown()`` and ``uninstrument()``."""

    app: Any
    settings: Settings
    telemetry: Telemetry
    stats: RequestStats
    tracker: ErrorTracker | None
    monitor: HealthMonitor | None
    dashboard: PerformanceDashboard | None
    alerts: AlertEvaluator | None
    system: SystemMetrics
    undo: Undo = field(default_factory=Undo)
    fastpath: bool = True
    _started: bool = False
    _live: bool = True
    _stopping: Any = None  # the stop task when uninstrument() ran inside an event loop

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

    def uninstrument(self) -> list[str]:
        """Undo everything ``instrument()`` changed; ``instrument(app)`` works again afterwards.

        The app gets its middleware, routes, lifespan and state back; the engine its dialect
        methods, the Redis client its methods. Process-wide hooks (the lean histograms' reader
        hook, the tracers' id generators, the OTLP exporters' span encoder, the httpx instrumentor,
        the log scrubbing filter) are undone with the last live handle. Started components are
        stopped. Returns the steps that failed (logged, never raised).
        """
        if not self._live:
            return []
        self._live = False
        if self._started:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(self.stop())
            else:  # called from async code: stop in the background, the wiring goes now
                self._stopping = loop.create_task(self.stop())
        failed = self.undo.run()
        _release_process(self)
        return failed


# The HTTP layer's wiring under its old name, for bench/apps.py.
_instrument_http_server = instrument_http_server

# Live handles in this process; process-wide hooks go with the last one.
_live_handles = 0
_live_lock = threading.Lock()


def _acquire_process() -> None:
    global _live_handles
    with _live_lock:
        _live_handles += 1


def _release_process(handle: Instrumentation) -> None:
    """With the last live handle: the hooks every instrumented app of the process shares."""
    global _live_handles
    with _live_lock:
        _live_handles -= 1
        last = _live_handles == 0
    if last:
        detach_lean_histograms(handle.telemetry.meter_provider)
        restore_id_generators()
        uninstall_lean_otlp_encoder()
        if handle.tracker is not None:  # the process's tracker: its log filter is process-wide
            handle.tracker.remove_log_scrubbing()
        uninstrument_httpx()


def mark_instrumented(name: str) -> None:
    """Record that zero-code mode already instrumented a library globally."""
    MARKS.claim(PROCESS, name)


def _wrap_lifespan(app: Starlette, handle: Instrumentation) -> None:
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        await handle.start()
        try:
            async with inner(app_) as state:
                if handle.settings.sizewise_gc_freeze:
                    # Start-up is over: what exists now lives until exit (see sizewise_otel/runtime/heap.py).
                    log.info("startup_heap_frozen", objects=freeze_startup_heap())
                yield state
        finally:
            await handle.stop()

    app.router.lifespan_context = lifespan
    handle.undo.add("lifespan", lambda: setattr(app.router, "lifespan_context", inner))


def _component_routers(handle: Instrumentation) -> list[Any]:
    """Each component's routes, from its ``api`` module (components do not build their own routers)."""
    from sizewise_otel.dashboard.api import build_router as dashboard_router
    from sizewise_otel.errors.api import build_router as errors_router
    from sizewise_otel.health.api import health_router

    routers = []
    if handle.tracker is not None:
        routers.append(errors_router(handle.tracker))
    if handle.monitor is not None:
        routers.append(health_router(handle.monitor))
    if handle.dashboard is not None:
        routers.append(dashboard_router(handle.dashboard))
    if handle.alerts is not None:
        routers.append(handle.alerts.router())  # alerts/ keeps its own for now
    return routers


def _set_state(app: Any, undo: Undo, name: str, value: Any) -> None:
    setattr(app.state, name, value)
    undo.add(f"app.state.{name}", lambda: delattr(app.state, name) if hasattr(app.state, name) else None)


def instrument(app: Any, *, engine: Any = None, redis: Any = None, settings: Settings | None = None,
               http_dependencies: dict[str, str] | None = None) -> Instrumentation:
    """Wire OTel and the SizeWise components into a Starlette/FastAPI app. Idempotent per app;
    ``handle.uninstrument()`` undoes it."""
    existing = getattr(app.state, "sizewise", None)
    if existing is not None:
        return existing
    fast = warn_if_disabled().enabled  # the seam's feature check: one warning when the public path is used
    settings = settings or get_settings()
    ensure_semconv_opt_in(settings)
    telemetry = get_telemetry(settings)
    found = coexist.detect(app, telemetry)  # before anything here changes the app
    stats = RequestStats()
    undo = Undo()
    _set_state(app, undo, "sizewise_keyring", KeyRing(settings))

    tracker = initialize_error_tracker(settings, telemetry) if settings.error_tracking_enabled else None
    monitor = (initialize_health_monitor(settings, telemetry, engine=engine, redis=redis,
                                         http_dependencies=http_dependencies)
               if settings.health_monitoring_enabled else None)
    dashboard = (initialize_performance_dashboard(settings, telemetry, monitor=monitor, tracker=tracker)
                 if settings.performance_dashboard_enabled else None)
    alerts = AlertEvaluator(settings, telemetry)
    system = SystemMetrics()
    handle = Instrumentation(app, settings, telemetry, stats, tracker, monitor, dashboard, alerts, system,
                             undo=undo, fastpath=fast)
    _acquire_process()
    _set_state(app, undo, "sizewise", handle)

    if settings.metrics_collection_enabled:
        system.register(telemetry)
        telemetry.observe("sizewise.error.rate", lambda: [(stats.error_rate_percent(), {})])
        instrument_system(telemetry, system)  # the same readers (one container monitor, one CPU priming)
    if found.hand_over_contrib:  # it records into the service's MeterProvider, which /metrics never reads
        undo.add("fastapi instrumentor handed over", coexist.hand_over_contrib(app))
    # Request/5xx counting and the error hand-off (handle.stats, handle.tracker) ride on the HTTP
    # layer, or on MonitoringMiddleware on the public path: see instrument_http_server.
    instrument_http_server(app, telemetry, undo, fast)
    instrument_httpx(telemetry)
    if engine is not None:
        instrument_engine(engine, telemetry, undo)
    if redis is not None:
        instrument_redis(redis, telemetry, undo)

    # The app's own /metrics, if any, renders the same registry (web/coexist.py): no second one.
    routers = ([] if found.keep_metrics_route else [metrics_router()]) + _component_routers(handle)
    add_endpoints(app, routers, undo)  # behind one path check (web/routes.py)
    _wrap_lifespan(app, handle)
    if found:
        log.info("coexistence", **found.notes)  # one line: what the service already had, what SizeWise did
    return handle
