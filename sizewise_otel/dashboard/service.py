"""PerformanceDashboard: the widget catalog answered from the embedded history or from Prometheus.

Embedded (default): a background task samples this process's metrics every ``sample_interval``
seconds (5 s, the spec's fast tier), evaluates every widget in-process and keeps the bounded
multi-resolution history of ``history.py``. With ``PROMETHEUS_URL`` set, the same widgets answer by
running their PromQL against Prometheus, and nothing is kept in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import structlog
from fastapi import APIRouter

from sizewise_otel.catalog import SIGNALS, Signal, signal
from sizewise_otel.dashboard import capacity
from sizewise_otel.dashboard.expr import Expr, Labels, Vector, clean
from sizewise_otel.dashboard.history import RANGES, History, read_registry, vectors_to_values
from sizewise_otel.dashboard.promql import PrometheusError, PrometheusSource
from sizewise_otel.dashboard.widgets import DASHBOARDS, Widget, metric_queries, widget, widgets
from sizewise_otel.runtime.tasks import cancel_task
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry

log = structlog.get_logger("sizewise.dashboard")

WIDGET_SERIES_LIMIT = 10
METRIC_SERIES_LIMIT = 8
# The overview's headline numbers: key -> widget id.
OVERVIEW = {
    "request_rate": "http_request_rate",
    "error_rate_percent": "http_error_rate",
    "latency_p95_seconds": "http_latency_p95",
    "cpu_percent": "system_cpu",
    "memory_percent": "system_memory",
    "active_sessions": "active_sessions",
    "calculations_per_minute": "hvac_calculations_per_minute",
    "cache_hit_ratio_percent": "cache_hit_ratio",
    "failing_checks": "failing_checks",
}
# Bottleneck hints: key -> (widget id, label to name the item, lowest first?)
BOTTLENECKS = {
    "slowest_routes": ("http_latency_by_route", "http_route", False),
    # the DB duration carries no operation (semconv: not parsed out of SQL): ranked per database
    "slowest_db_operations": ("db_latency_p95", "db_namespace", False),
    "lowest_cache_hit_ratio": ("cache_hit_ratio_by_operation", "sizewise_cache_operation", True),
}


def _labels_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


def _value(vector: Vector) -> float | None:
    """A widget's headline value: its only series, or the largest when it has several."""
    values = [v for v in vector.values() if math.isfinite(v)]
    if not values:
        return None
    return values[0] if len(values) == 1 else max(values)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class PerformanceDashboard:
    def __init__(self, settings: Settings, telemetry: Telemetry, *, monitor: Any = None,
                 tracker: Any = None, sample_interval: float = 5.0,
                 prometheus_url: str | None = None, registry: Any = None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.monitor = monitor
        self.tracker = tracker
        self.sample_interval = sample_interval
        url = settings.prometheus_url if prometheus_url is None else prometheus_url
        self.prometheus = PrometheusSource(url) if url else None
        self.history = History(retention_hours=settings.metrics_retention_hours)
        self.registry = registry  # None: prometheus_client.REGISTRY, what GET /metrics serves
        self._latest: dict[str, list[Vector]] = {}
        self.capacity_record = capacity.CapacityRecord()
        self._task: asyncio.Task[None] | None = None
        self._tick_lock = asyncio.Lock()
        self._plan_cache: tuple[Any, list[tuple[Signal, str, Any]], set[str]] | None = None

    @property
    def source(self) -> str:
        return "prometheus" if self.prometheus else "embedded"

    # --- lifecycle ------------------------------------------------------------------------
    async def initialize(self) -> None:
        if self.prometheus is None and self._task is None:
            self._ensure_system_signals()
            await self.sample()
            self._task = asyncio.create_task(self._run(), name="sizewise-dashboard-sampler")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        if self.prometheus is not None:
            await self.prometheus.close()

    def _ensure_system_signals(self) -> None:
        """The Quick Start calls get_widget_data('system_cpu') without instrument(): make sure the
        system gauges exist (registering twice is a no-op)."""
        if not self.settings.metrics_collection_enabled:
            return
        with contextlib.suppress(Exception):
            from sizewise_otel.instruments.system import SystemMetrics

            SystemMetrics().register(self.telemetry)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sample_interval)
            try:
                await self.sample()
            except Exception as exc:  # a failed sample must never stop the sampler
                log.warning("dashboard sample failed", error=type(exc).__name__)

    async def sample(self) -> None:
        async with self._tick_lock:
            await asyncio.to_thread(self._sample_sync)

    def _sample_sync(self, now: float | None = None) -> None:
        ts = time.time() if now is None else now
        current = widgets()
        derived, names = self._plan(current)
        self.history.add_snapshot(ts, read_registry(names, self.registry))
        samples = self.history.samples()
        self.capacity_record.observe(ts, samples)
        values: dict[Any, float] = {}
        latest: dict[str, list[Vector]] = {}
        for w in current:
            vectors = []
            for i, q in enumerate(w.queries):
                try:
                    vec = clean(q.expr.evaluate(samples))
                except Exception:
                    vec = {}
                vectors.append(vec)
                values.update(vectors_to_values(f"w:{w.id}:{i}", vec, WIDGET_SERIES_LIMIT))
            latest[w.id] = vectors
        for sig, stat, e in derived:
            try:
                vec = clean(e.evaluate(samples))
            except Exception:
                vec = {}
            values.update(vectors_to_values(f"m:{sig.name}:{stat}", vec, METRIC_SERIES_LIMIT))
        self.history.record(ts, values)
        self._latest = latest

    def _plan(self, current: list[Widget]) -> tuple[list[tuple[Signal, str, Any]], set[str]]:
        """The catalog's derived queries and every metric name the widgets and queries read.

        Computed once per set of widgets and signals (walking every expression each 5 s costs more
        than reading the few metrics it names).
        """
        key = (*current, *SIGNALS)  # the objects themselves: held, so compared by identity safely
        cached = self._plan_cache
        if cached is not None and len(cached[0]) == len(key) and all(
                a is b for a, b in zip(cached[0], key, strict=True)):
            return cached[1], cached[2]
        names: set[str] = set()
        for w in current:
            for q in w.queries:
                names |= q.expr.metric_names()
        derived = [(sig, stat, e) for sig in SIGNALS for stat, e in metric_queries(sig)]
        for _, _, e in derived:
            names |= e.metric_names()
        self._plan_cache = (key, derived, names)
        return derived, names

    async def _embedded_ready(self) -> None:
        if self.history.last_sample is None:
            self._ensure_system_signals()
            await self.sample()

    # --- widget values --------------------------------------------------------------------
    async def _current(self, w: Widget) -> list[Vector]:
        if self.prometheus is not None:
            results = await asyncio.gather(*(self.prometheus.instant(q.expr.promql()) for q in w.queries),
                                           return_exceptions=True)
            return [clean(r) if isinstance(r, dict) else {} for r in results]
        await self._embedded_ready()
        return self._latest.get(w.id, [])

    async def _series(self, w: Widget, range_: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        tier = RANGES[range_]
        for i, q in enumerate(w.queries):
            if self.prometheus is not None:
                try:
                    got = await self.prometheus.range(q.expr.promql(), tier.step * tier.points, tier.step)
                except PrometheusError:
                    got = {}
            else:
                got = self.history.series(f"w:{w.id}:{i}", range_)
            for labels, points in sorted(got.items())[:WIDGET_SERIES_LIMIT]:
                out.append({"query": i, "legend": q.legend, "labels": _labels_dict(labels),
                            "points": [[round(t, 3), _round(v)] for t, v in points if math.isfinite(v)]})
        return out

    async def get_widget_data(self, widget_id: str, range_: str = "1h") -> dict[str, Any]:
        """Current value and recent series of one widget; KeyError for an unknown id."""
        w = widget(widget_id)
        if range_ not in RANGES:
            raise ValueError(f"range must be one of {sorted(RANGES)}")
        error = None
        try:
            vectors = await self._current(w)
        except PrometheusError as exc:
            vectors, error = [], str(exc)
        first = vectors[0] if vectors else {}
        value = _value(first)
        data: dict[str, Any] = {
            "id": w.id, "title": w.title, "description": w.description, "unit": w.unit,
            "dashboard": w.dashboard, "dashboard_uid": DASHBOARDS[w.dashboard][0], "row": w.row,
            "panel": w.panel, "thresholds": list(w.thresholds), "invert_thresholds": w.invert,
            "promql": [q.expr.promql() for q in w.queries], "source": self.source,
            "timestamp": time.time(), "value": _round(value), "status": w.status(value),
            "current": [{"labels": _labels_dict(k), "value": _round(v)} for k, v in sorted(first.items())],
            "range": range_, "series": await self._series(w, range_),
        }
        if error:
            data["error"] = error
        return data

    async def list_widgets(self) -> list[dict[str, Any]]:
        return [{"id": w.id, "title": w.title, "unit": w.unit, "dashboard": w.dashboard, "row": w.row,
                 "panel": w.panel, "description": w.description} for w in widgets()]

    # --- catalog metric history -----------------------------------------------------------
    async def get_metric_history(self, metric_name: str, range_: str = "1h") -> dict[str, Any]:
        """History of a catalog signal (OTel or Prometheus name); KeyError when unknown."""
        sig: Signal = signal(metric_name)
        if range_ not in RANGES:
            raise ValueError(f"range must be one of {sorted(RANGES)}")
        tier = RANGES[range_]
        series = []
        for stat, e in metric_queries(sig):
            if self.prometheus is not None:
                try:
                    got = await self.prometheus.range(e.promql(), tier.step * tier.points, tier.step)
                except PrometheusError:
                    got = {}
            else:
                await self._embedded_ready()
                got = self.history.series(f"m:{sig.name}:{stat}", range_)
            for labels, points in sorted(got.items())[:METRIC_SERIES_LIMIT]:
                series.append({"stat": stat, "labels": _labels_dict(labels),
                               "points": [[round(t, 3), _round(v)] for t, v in points if math.isfinite(v)]})
        return {"metric": sig.name, "prometheus_name": sig.prom_name, "kind": str(sig.kind),
                "unit": sig.unit, "description": sig.description, "range": range_,
                "step_seconds": tier.step, "source": self.source,
                "promql": {stat: e.promql() for stat, e in metric_queries(sig)}, "series": series}

    # --- overview -------------------------------------------------------------------------
    async def get_dashboard_overview(self) -> dict[str, Any]:
        ids = list(OVERVIEW.values()) + [b[0] for b in BOTTLENECKS.values()]
        try:
            results = await asyncio.gather(*(self._current(widget(i)) for i in ids))
        except PrometheusError:
            results = [[] for _ in ids]
        current = {i: (r[0] if r else {}) for i, r in zip(ids, results, strict=True)}
        overview: dict[str, Any] = {"timestamp": time.time(), "source": self.source}
        status = {}
        for key, wid in OVERVIEW.items():
            value = _value(current[wid])
            overview[key] = _round(value)
            status[key] = widget(wid).status(value)
        overview["status"] = status
        overview["health"] = await self._health(overview.get("failing_checks"))
        overview["bottlenecks"] = {
            key: self._ranked(current[wid], label, ascending)
            for key, (wid, label, ascending) in BOTTLENECKS.items()}
        overview["capacity"] = await self.capacity_insights()
        overview["dashboards"] = [{"key": k, "uid": uid, "title": title}
                                  for k, (uid, title, _) in DASHBOARDS.items()]
        overview["widgets"] = [w.id for w in widgets()]
        if self.prometheus is None:
            overview["history"] = self.history.stats()
        return overview

    async def capacity_insights(self, now: float | None = None) -> list[dict[str, Any]]:
        """Capacity planning as sentences: {signal, labels, sentence, value, unit, horizon, widget}."""
        if self.prometheus is not None:
            prometheus = self.prometheus

            async def query(e: Expr) -> Vector:
                try:
                    return clean(await prometheus.instant(e.promql()))
                except PrometheusError:
                    return {}

            return await capacity.from_prometheus(query)
        await self._embedded_ready()
        return capacity.embedded(self.history, self.capacity_record, self.history.samples(),
                                 time.time() if now is None else now)

    @staticmethod
    def _ranked(vector: Vector, label: str, ascending: bool, limit: int = 5) -> list[dict[str, Any]]:
        items = sorted(((dict(k), v) for k, v in vector.items() if math.isfinite(v)),
                       key=lambda kv: kv[1], reverse=not ascending)[:limit]
        return [{"name": lbl.get(label, ""), "labels": lbl, "value": _round(v)} for lbl, v in items]

    async def _health(self, failing: float | None) -> dict[str, Any]:
        if self.monitor is not None:
            try:
                health = await asyncio.wait_for(self.monitor.get_overall_health(), timeout=5.0)
                if isinstance(health, dict) and health:
                    return {"overall_status": health.get("overall_status", "unknown"),
                            "summary": health.get("summary", {})}
            except Exception:
                pass
        if failing is None:
            return {"overall_status": "unknown", "failing_checks": None}
        return {"overall_status": "healthy" if failing == 0 else "degraded", "failing_checks": failing}

    def router(self) -> APIRouter:
        from sizewise_otel.dashboard.api import build_router

        return build_router(self)


_dashboard: PerformanceDashboard | None = None


def initialize_performance_dashboard(settings: Settings | None = None, telemetry: Telemetry | None = None,
                                     **kwargs: Any) -> PerformanceDashboard:
    global _dashboard
    if _dashboard is None:
        telemetry = telemetry or get_telemetry(settings)
        _dashboard = PerformanceDashboard(settings or telemetry.settings, telemetry, **kwargs)
    else:  # a later instrument() call brings the monitor and tracker the first caller lacked
        for name in ("monitor", "tracker"):
            if kwargs.get(name) is not None and getattr(_dashboard, name) is None:
                setattr(_dashboard, name, kwargs[name])
    return _dashboard


def get_performance_dashboard() -> PerformanceDashboard:
    return _dashboard or initialize_performance_dashboard()
