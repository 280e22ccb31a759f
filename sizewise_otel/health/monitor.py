"""The HealthMonitor: built-in and user checks, a background refresh, history, gauges, and the API.

``initialize()`` only starts background tasks: it never waits for a dependency, so a dead database
or a Redis that never answers cannot hang start-up. Readers get cached results (each with its age)
and never wait longer than a check's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from fastapi import APIRouter

from sizewise_otel.catalog import HEALTH_CHECK, HEALTH_STATE
from sizewise_otel.health import checks as builtin
from sizewise_otel.health.format import document, public_document
from sizewise_otel.health.history import HealthHistory
from sizewise_otel.health.model import Advice, CheckResult, CheckSpec, Status
from sizewise_otel.health.runner import CheckRunner
from sizewise_otel.runtime.tasks import cancel_task
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry

log = structlog.get_logger("sizewise.health")

Capabilities = Mapping[str, Iterable[str] | Mapping[str, Iterable[str]]]


def normalise_capabilities(capabilities: Capabilities) -> dict[str, dict[str, list[str]]]:
    """``{"calculate": ["database"]}`` (all required) or ``{"calculate": {"requires": [...],
    "optional": [...]}}`` -> the second form."""
    out: dict[str, dict[str, list[str]]] = {}
    for cap, needs in capabilities.items():
        if isinstance(needs, Mapping):
            unknown = set(needs) - {"requires", "optional"}
            if unknown:
                raise ValueError(f"capability {cap!r}: unknown keys {sorted(unknown)}; "
                                 "use 'requires' and 'optional'")
            out[cap] = {"requires": list(needs.get("requires", ())),
                        "optional": list(needs.get("optional", ()))}
        elif isinstance(needs, str):
            out[cap] = {"requires": [needs], "optional": []}
        else:
            out[cap] = {"requires": list(needs), "optional": []}
    return out


def default_capabilities(*, database: bool, redis: bool, http: Iterable[str],
                         telemetry: bool = True) -> dict[str, dict[str, list[str]]]:
    """Calculations need the database (the cache is optional); the cache needs Redis; each HTTP
    dependency is a capability of its own; telemetry export needs the exporter."""
    caps: dict[str, dict[str, list[str]]] = {}
    if database or redis:
        caps["calculate"] = {"requires": ["database"] if database else [],
                             "optional": ["redis"] if redis else []}
    if redis:
        caps["cache"] = {"requires": ["redis"], "optional": []}
    for name in http:
        caps[name] = {"requires": [name], "optional": []}
    if telemetry:
        caps["telemetry"] = {"requires": ["telemetry_export"], "optional": []}
    return caps


# --- gauges: one registration per Telemetry, reading every live monitor -------------------------

_order = itertools.count()
_live: dict[int, tuple[int, weakref.ReferenceType[HealthMonitor]]] = {}


def _results(telemetry: Telemetry) -> dict[str, CheckResult]:
    """Every live monitor's last result per check name; the newest monitor wins a shared name."""
    merged: dict[str, CheckResult] = {}
    for key, (_, ref) in sorted(_live.items(), key=lambda kv: kv[1][0]):
        monitor = ref()
        if monitor is None:
            _live.pop(key, None)
            continue
        if monitor.telemetry is telemetry:
            for result in list(monitor.runner.results.values()):
                merged[result.name] = result
    return merged


class _NoResultsYet(Exception):
    """No check has finished yet: not a reading. Raised, it leaves the tier cache empty (an empty
    list would be held for the whole tier, hiding the series for 30 s after start); the collection
    records nothing and the next one asks again."""


def _current(telemetry: Telemetry) -> dict[str, CheckResult]:
    results = _results(telemetry)
    if not results:
        raise _NoResultsYet
    return results


def _status_gauge(telemetry: Telemetry) -> Callable[[], list[Any]]:
    # One series per check and state, 1 for the current state and 0 for the others (the semconv
    # state-set shape): alerts and panels select a state by label, and a sum over states is 1.
    def callback() -> list[tuple[float, dict[str, str]]]:
        return [(1.0 if result.status is state else 0.0, {HEALTH_CHECK: name, HEALTH_STATE: state.value})
                for name, result in sorted(_current(telemetry).items()) for state in Status]

    return callback


def _duration_gauge(telemetry: Telemetry) -> Callable[[], list[Any]]:
    def callback() -> list[tuple[float, dict[str, str]]]:
        return [(result.duration_s, {HEALTH_CHECK: name}) for name, result in sorted(_current(telemetry).items())]

    return callback


def _register_gauges(monitor: HealthMonitor) -> None:
    _live[id(monitor)] = (next(_order), weakref.ref(monitor, lambda _r, k=id(monitor): _live.pop(k, None)))
    telemetry = monitor.telemetry
    telemetry.observe("sizewise.health.status", _status_gauge(telemetry))
    telemetry.observe("sizewise.health.check.duration", _duration_gauge(telemetry))


class HealthMonitor:
    def __init__(self, settings: Settings, telemetry: Telemetry, *, engine: Any = None, redis: Any = None,
                 http_dependencies: dict[str, str] | None = None,
                 capabilities: Capabilities | None = None,
                 system: Any = None, include_system: bool = True,
                 refresh_interval: float | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.timeout = settings.health_check_timeout_seconds
        self.ttl = settings.health_cache_ttl_seconds
        self.refresh_interval = refresh_interval or (self.ttl if self.ttl >= 1.0 else 5.0)
        self.started_at = time.time()
        self._init_args: dict[str, Any] = {}
        self._specs: dict[str, CheckSpec] = {}
        self._http_client: Any = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.loop_lag = builtin.LoopLagProbe()
        self.history = HealthHistory(
            settings.health_retention_hours,
            max_gap=max(30.0, 3 * self.refresh_interval, 3 * self.timeout))
        self.runner = CheckRunner(self.timeout, self.ttl, on_result=self._on_result)

        if include_system:
            if system is None:
                from sizewise_otel.instruments.system import SystemMetrics

                system = SystemMetrics()
            for spec in builtin.system_checks(settings, system):
                self._add(spec)
        self._add(builtin.event_loop_check(self.loop_lag))
        if engine is not None:
            self._add(builtin.database_check(engine, self.timeout))
        if redis is not None:
            self._add(builtin.redis_check(redis, self.timeout))
        if http_dependencies is None and settings.materials_service_url:
            http_dependencies = {"materials": settings.materials_service_url.rstrip("/") + "/livez"}
        for name, url in (http_dependencies or {}).items():
            self._add(builtin.http_check(name, url, self.timeout, self._client))
        self._add(builtin.telemetry_check(telemetry, settings))

        self.capabilities = normalise_capabilities(capabilities) if capabilities is not None else \
            default_capabilities(database=engine is not None, redis=redis is not None,
                                 http=list(http_dependencies or {}))
        _register_gauges(self)

    # --- registry ---------------------------------------------------------------------------

    def _add(self, spec: CheckSpec, *, replace: bool = False) -> CheckSpec:
        if spec.name in self._specs and not replace:
            raise ValueError(f"health check {spec.name!r} already exists (pass replace=True)")
        self._specs[spec.name] = spec
        return spec

    def add_check(self, name: str, fn: Callable[[], Any], *, critical: bool = True,
                  timeout: float | None = None, component: str | None = None,
                  measurement: str = "status", component_type: str = "component",
                  readiness: bool | None = None, advice: Advice = None,
                  observed_unit: str | None = None, replace: bool = False) -> CheckSpec:
        """Register a user check: ``fn`` is sync (run in a thread) or async, and returns None (healthy),
        a bool, a status word, a dict (status, observed_value, observed_unit, threshold, message,
        reason, advice, ...) or an ``Outcome``; raising makes it critical with reason ``error``.

        ``critical=False``: a failure degrades the overall status to warning only. ``readiness``
        (default: same as ``critical``) puts the check into ``/readyz``.
        """
        spec = CheckSpec(name, fn, critical=critical, readiness=critical if readiness is None else readiness,
                         timeout=timeout, component=component or name, measurement=measurement,
                         component_type=component_type, advice=advice, observed_unit=observed_unit)
        return self._add(spec, replace=replace)

    def remove_check(self, name: str) -> None:
        self._specs.pop(name, None)
        self.runner.results.pop(name, None)

    def configure(self, name: str, **fields: Any) -> CheckSpec:
        """Change how a check is treated, e.g. ``configure("redis", critical=True, readiness=True)``."""
        spec = self._specs[name]
        allowed = {"critical", "readiness", "timeout", "advice", "component", "measurement"}
        unknown = set(fields) - allowed
        if unknown:
            raise TypeError(f"cannot configure {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key, value in fields.items():
            setattr(spec, key, value)
        return spec

    @property
    def checks(self) -> dict[str, CheckSpec]:
        return dict(self._specs)

    # --- lifecycle --------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Start the background refresh; returns at once (no dependency is contacted here)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self.loop_lag.start()
        self._task = loop.create_task(self._refresh_forever(), name="sizewise-health-refresh")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        await self.loop_lag.stop()
        self.runner.cancel_inflight()
        pending, self._http_client = self._http_client, None
        if pending is not None and self._http_loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await (await pending).aclose()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.runner.refresh_many(list(self._specs.values()))
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - the runner never raises; belt and braces
                log.exception("health refresh failed")
            await asyncio.sleep(self.refresh_interval)

    async def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._http_client is None or self._http_loop is not loop or (
                self._http_client.done() and self._http_client.result().is_closed):
            # Built in a thread: loading the CA bundle takes ~0.1-0.4 s of CPU and must not block
            # the loop. Shared by concurrent checks; bound to its event loop (a new loop, a new client).
            self._http_loop = loop
            self._http_client = asyncio.ensure_future(asyncio.to_thread(
                httpx.AsyncClient, follow_redirects=False, headers={"user-agent": "sizewise-health"}))
        return await asyncio.shield(self._http_client)

    def _on_result(self, result: CheckResult) -> None:
        transition = self.history.record(result)
        if transition is None or (transition.previous is None and result.status is Status.HEALTHY):
            return
        level = log.info if result.status is Status.HEALTHY else log.warning
        level("health check changed", check=result.name, previous=transition.previous,
              current=transition.current, reason=result.outcome.reason, output=result.outcome.message)

    # --- reading ----------------------------------------------------------------------------

    def _max_age(self, spec: CheckSpec) -> float:
        # While the background refresh runs, a result up to one refresh late is still served.
        if self.running and self.ttl > 0:
            return self.ttl + self.runner.timeout_of(spec)
        return self.ttl

    async def results(self, specs: Iterable[CheckSpec] | None = None, *,
                      fresh: bool = False) -> list[tuple[CheckSpec, CheckResult]]:
        chosen = list(self._specs.values() if specs is None else specs)

        async def one(spec: CheckSpec) -> CheckResult:
            if fresh:
                return await self.runner.refresh(spec)
            return await self.runner.get(spec, self._max_age(spec))

        found = await asyncio.gather(*(one(s) for s in chosen))
        return list(zip(chosen, found, strict=True))

    def _service(self) -> dict[str, str]:
        return {"version": self.settings.service_version, "service_id": self.settings.otel_service_name,
                "description": f"{self.settings.otel_service_name} health"}

    async def get_overall_health(self, *, fresh: bool = False) -> dict[str, Any]:
        """The spec's seed API: ``overall_status``, ``summary`` and every check's details."""
        pairs = await self.results(fresh=fresh)
        now = time.time()
        return document(pairs, now_wall=now, now_mono=time.monotonic(), service=self._service(),
                        capabilities=self.capabilities,
                        uptime={spec.name: self.history.uptime(spec.name, now) for spec, _ in pairs})

    async def get_public_health(self) -> dict[str, Any]:
        return public_document(await self.get_overall_health())

    async def get_readiness(self) -> dict[str, Any]:
        """Critical dependencies only (the readiness checks)."""
        pairs = await self.results([s for s in self._specs.values() if s.readiness])
        failing = sorted(spec.name for spec, r in pairs if r.status is Status.CRITICAL)
        status = Status.CRITICAL if failing else Status.worst(r.status for _, r in pairs)
        doc: dict[str, Any] = {"status": status.ietf, "overall_status": status.value,
                               "checks": sorted(spec.name for spec, _ in pairs)}
        if failing:
            doc["failing"] = failing
        return doc

    def get_liveness(self) -> dict[str, Any]:
        """The process only: answering at all is the proof of life."""
        return {"status": "pass", "serviceId": self.settings.otel_service_name,
                "uptime_seconds": round(time.time() - self.started_at, 3)}

    def get_history(self, name: str | None = None, *, limit: int = 50) -> dict[str, Any]:
        """Transitions, 1 h / 24 h uptime and the per-minute trend, per check."""
        names = [name] if name is not None else list(self._specs)
        missing = [n for n in names if n not in self._specs]
        if missing:
            raise KeyError(missing[0])
        return {"retention_hours": self.history.retention_hours,
                "checks": {n: self.history.report(n, limit=limit) for n in names}}

    def router(self) -> APIRouter:
        from sizewise_otel.health.api import health_router

        return health_router(self)


_monitor: HealthMonitor | None = None


def _same(monitor: HealthMonitor, settings: Settings | None, telemetry: Telemetry | None,
          kwargs: dict[str, Any]) -> bool:
    if settings is not None and settings is not monitor.settings:
        return False
    if telemetry is not None and telemetry is not monitor.telemetry:
        return False
    return all(monitor._init_args.get(k) is v for k, v in kwargs.items())


def initialize_health_monitor(settings: Settings | None = None, telemetry: Telemetry | None = None,
                              **kwargs: Any) -> HealthMonitor:
    """The process's monitor. Called again with the same (or no) arguments it returns the same one;
    with different ones (another app, another engine) it builds a new one, which becomes the
    process's monitor (the previous one keeps running until its owner shuts it down)."""
    global _monitor
    if _monitor is not None and _same(_monitor, settings, telemetry, kwargs):
        return _monitor
    telemetry = telemetry or get_telemetry(settings)
    monitor = HealthMonitor(settings or telemetry.settings, telemetry, **kwargs)
    monitor._init_args = dict(kwargs)
    _monitor = monitor
    return monitor


def get_health_monitor() -> HealthMonitor:
    return _monitor or initialize_health_monitor()
