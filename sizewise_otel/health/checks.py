"""The built-in checks. Each factory returns a ``CheckSpec`` whose function measures one thing.

Synchronous functions (psutil, a sync SQLAlchemy engine, a sync Redis client) are run in a thread by
the runner; asynchronous ones (AsyncEngine, redis.asyncio, httpx) are awaited. None of them sets its
own deadline: the runner bounds every run with the check's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sizewise_otel.catalog import MOUNTPOINT, USAGE_SOURCE
from sizewise_otel.health.model import CheckSpec, Outcome, Status
from sizewise_otel.runtime.tasks import cancel_task
from sizewise_otel.settings import Settings

# Event-loop lag: how late a timer fires. Not a setting: these are properties of asyncio itself.
LOOP_LAG_WARNING_S = 0.1
LOOP_LAG_CRITICAL_S = 1.0
# A dependency answering slower than this share of its timeout is a warning ("slow").
SLOW_SHARE = 0.5
POOL_WARNING_PERCENT = 80.0
# CPU is judged on the mean of the readings over this window, so a burst does not flip /health.
CPU_WINDOW_S = 60.0


def threshold_status(value: float, warning: float, critical: float) -> Status:
    if value >= critical:
        return Status.CRITICAL
    if value >= warning:
        return Status.WARNING
    return Status.HEALTHY


def _latency_outcome(ms: float, timeout: float, what: str, details: dict[str, Any]) -> Outcome:
    slow_ms = timeout * SLOW_SHARE * 1000
    threshold = {"warning": round(slow_ms, 1), "critical": round(timeout * 1000, 1)}
    if ms >= slow_ms:
        return Outcome(Status.WARNING, round(ms, 2), "ms", threshold, reason="slow", details=details,
                       message=f"{what} answered in {ms:.0f} ms (warning above {slow_ms:.0f} ms)")
    return Outcome(Status.HEALTHY, round(ms, 2), "ms", threshold, details=details,
                   message=f"{what} answered in {ms:.1f} ms")


# --- system ---------------------------------------------------------------------------------

_SYSTEM_ADVICE = {
    "cpu": ("CPU usage is high: scale out (more replicas/workers) or raise the CPU limit; find the "
            "hot routes on the HTTP latency dashboard. Thresholds: CPU_WARNING_PERCENT / "
            "CPU_CRITICAL_PERCENT."),
    "memory": ("Memory usage is high: raise the memory limit or add replicas; check process RSS "
               "(process_memory_usage_bytes) for growth that suggests a leak; lower cache "
               "sizes. Thresholds: MEMORY_WARNING_PERCENT / MEMORY_CRITICAL_PERCENT."),
    "disk": ("The data volume is filling up: remove old logs and SQLite files, lower "
             "ERROR_RETENTION_HOURS / METRICS_RETENTION_HOURS, or grow the volume. Thresholds: "
             "DISK_WARNING_PERCENT / DISK_CRITICAL_PERCENT."),
}


# The health API keeps its short detail keys whatever the metric attributes are called.
_DETAIL_KEYS = {MOUNTPOINT: "mountpoint", USAGE_SOURCE: "source"}


def system_checks(settings: Settings, system: Any) -> list[CheckSpec]:
    """CPU, memory and disk against the settings' thresholds (system: a SystemMetrics). Disk is
    judged on the fullest mount of the data paths, labelled by its mountpoint."""

    def resource(name: str, read: Callable[[], Any], warning: float, critical: float,
                 smooth: float = 0.0) -> CheckSpec:
        samples: deque[tuple[float, float]] = deque(maxlen=1000)

        def probe() -> Outcome:
            readings = list(read())
            if not readings:
                raise RuntimeError(f"no {name} reading (no readable data path)")
            # Several mounts (disk): the fullest decides, each one is in the details.
            value, attrs = max(readings, key=lambda r: r[0])
            details: dict[str, Any] = {_DETAIL_KEYS.get(k, k): v for k, v in attrs.items()}
            if len(readings) > 1:
                details["readings"] = {str(a.get(MOUNTPOINT) or a.get(USAGE_SOURCE) or i): round(float(v), 2)
                                       for i, (v, a) in enumerate(readings)}
            shown = float(value)
            if smooth:  # CPU is spiky: judge the mean over the window, not one reading
                now = time.monotonic()
                samples.append((now, shown))
                while samples and samples[0][0] < now - smooth:
                    samples.popleft()
                details["current"] = round(shown, 2)
                details["window_seconds"] = smooth
                shown = sum(v for _, v in samples) / len(samples)
            status = threshold_status(shown, warning, critical)
            source = attrs.get(USAGE_SOURCE) or attrs.get(MOUNTPOINT) or ""
            return Outcome(status, round(shown, 2), "percent",
                           {"warning": warning, "critical": critical},
                           message=f"{name} at {shown:.1f}% ({source})".replace(" ()", "")
                           + (f", mean of the last {smooth:.0f}s" if smooth else ""),
                           reason=None if status is Status.HEALTHY else "threshold",
                           details=details)

        # CPU saturation is load, not an outage: a 503 would make a load balancer pull the busiest
        # instances and push their traffic onto the rest. HighCpuUsage alerts on it instead.
        return CheckSpec(name, probe, critical=name != "cpu", readiness=False, component=name,
                         measurement="utilization", component_type="system",
                         advice=_SYSTEM_ADVICE[name], observed_unit="percent")

    return [
        resource("cpu", system.cpu, settings.cpu_warning_percent, settings.cpu_critical_percent,
                 smooth=CPU_WINDOW_S),
        resource("memory", system.memory, settings.memory_warning_percent,
                 settings.memory_critical_percent),
        resource("disk", system.disk, settings.disk_warning_percent, settings.disk_critical_percent),
    ]


# --- the process: event-loop lag -------------------------------------------------------------

class LoopLagProbe:
    """A timer that measures how late it fires: the event loop's responsiveness."""

    def __init__(self, interval: float = 0.25, window: int = 20) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sizewise-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - t0 - self.interval))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def lag(self) -> float | None:
        return max(self.samples) if self.samples else None


def event_loop_check(probe: LoopLagProbe) -> CheckSpec:
    async def check() -> Outcome:
        lag = probe.lag() if probe.running else None
        if lag is None:  # no sampler running: one turn of the loop
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.sleep(0)
            lag = loop.time() - t0
        status = threshold_status(lag, LOOP_LAG_WARNING_S, LOOP_LAG_CRITICAL_S)
        return Outcome(status, round(lag * 1000, 2), "ms",
                       {"warning": LOOP_LAG_WARNING_S * 1000, "critical": LOOP_LAG_CRITICAL_S * 1000},
                       message=f"event loop lag {lag * 1000:.1f} ms (max over the last few seconds)",
                       reason=None if status is Status.HEALTHY else "threshold")

    return CheckSpec("event_loop", check, critical=True, readiness=False, component="process",
                     measurement="eventLoopLag", component_type="system", observed_unit="ms",
                     advice=("The event loop is blocked: look for synchronous I/O or CPU-heavy work in "
                             "async endpoints (run it with asyncio.to_thread or a process pool)."))


# --- database -------------------------------------------------------------------------------

def _pool_stats(sync_engine: Any) -> dict[str, Any]:
    pool = sync_engine.pool
    try:
        used = int(pool.checkedout())
        size = int(pool.size())
        overflow = int(getattr(pool, "_max_overflow", 0))
    except (AttributeError, TypeError, NotImplementedError):
        return {}
    stats: dict[str, Any] = {"pool_used": used, "pool_size": size}
    if overflow >= 0 and size + overflow > 0:
        capacity = size + overflow
        stats["pool_max"] = capacity
        stats["pool_saturation_percent"] = round(100.0 * used / capacity, 1)
    return stats


def describe_engine(engine: Any) -> str:
    url = getattr(engine, "sync_engine", engine).url
    if url.host:
        return f"{url.get_backend_name()} at {url.host}:{url.port or 'default port'}/{url.database or ''}"
    return f"{url.get_backend_name()} database {url.database or '(memory)'}"


def database_check(engine: Any, timeout: float) -> CheckSpec:
    """``SELECT 1`` through the engine (sync Engine or AsyncEngine), plus pool saturation."""
    from sqlalchemy import text

    sync_engine = getattr(engine, "sync_engine", engine)
    is_async = sync_engine is not engine
    where = describe_engine(engine)

    def judge(ms: float, stats: dict[str, Any]) -> Outcome:
        outcome = _latency_outcome(ms, timeout, "SELECT 1", stats)
        saturation = stats.get("pool_saturation_percent")
        if saturation is not None and saturation >= POOL_WARNING_PERCENT and outcome.status is Status.HEALTHY:
            outcome.status, outcome.reason = Status.WARNING, "pool_saturated"
            outcome.message += f"; connection pool {saturation:.0f}% used"
            outcome.advice = ("The connection pool is nearly exhausted: raise pool_size/max_overflow, "
                              "or look for requests holding connections (long transactions).")
        return outcome

    if is_async:
        async def check() -> Outcome:
            stats = _pool_stats(sync_engine)
            t0 = time.perf_counter()
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return judge((time.perf_counter() - t0) * 1000, stats)
        fn: Callable[[], Any] = check
    else:
        def probe() -> Outcome:
            stats = _pool_stats(sync_engine)
            t0 = time.perf_counter()
            with sync_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return judge((time.perf_counter() - t0) * 1000, stats)
        fn = probe

    def advice(reason: str) -> str:
        if reason == "timeout":
            return (f"The database ({where}) did not answer within the timeout: check the database "
                    "server's load and locks, the network path, and pool saturation; set a "
                    "connect_timeout in DATABASE_URL. Calculations that need the database fail.")
        if reason == "slow":
            return f"The database ({where}) is slow: check its load, locks and slow-query log."
        return (f"Database unreachable ({where}): check DATABASE_URL, credentials, and that the "
                "database service is running and accepting connections. Calculations that need "
                "the database fail until it is back.")

    return CheckSpec("database", fn, critical=True, readiness=True, component="database",
                     measurement="responseTime", component_type="datastore", advice=advice,
                     observed_unit="ms")


# --- Redis ----------------------------------------------------------------------------------

def _redis_is_async(client: Any) -> bool:
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover
        return False
    return isinstance(client, redis.asyncio.Redis)


def describe_redis(client: Any) -> str:
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "redis"
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def redis_check(client: Any, timeout: float) -> CheckSpec:
    """PING and its latency, through a sync ``redis.Redis`` or a ``redis.asyncio.Redis``."""
    where = describe_redis(client)

    if _redis_is_async(client):
        async def check() -> Outcome:
            t0 = time.perf_counter()
            await client.ping()
            return _latency_outcome((time.perf_counter() - t0) * 1000, timeout, "PING", {"address": where})
        fn: Callable[[], Any] = check
    else:
        def probe() -> Outcome:
            t0 = time.perf_counter()
            client.ping()
            return _latency_outcome((time.perf_counter() - t0) * 1000, timeout, "PING", {"address": where})
        fn = probe

    def advice(reason: str) -> str:
        if reason == "timeout":
            return (f"Redis at {where} accepted the connection but did not answer within the timeout — "
                    "check the redis service (paused, overloaded, or a proxy/firewall dropping "
                    "traffic) and set socket_timeout/socket_connect_timeout on the client; cache "
                    "bypass is active.")
        if reason == "slow":
            return f"Redis at {where} is slow — check its CPU, memory and slow log; cache bypass may engage."
        return (f"Redis unreachable at {where} — check REDIS_URL and the redis service; cache bypass is "
                "active.")

    # The cache is optional: requests bypass it when Redis is down, so a Redis failure degrades.
    return CheckSpec("redis", fn, critical=False, readiness=False, component="redis",
                     measurement="responseTime", component_type="datastore", advice=advice,
                     observed_unit="ms")


# --- HTTP dependencies ------------------------------------------------------------------------

def display_url(url: str) -> str:
    """scheme://host:port/path: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def http_check(name: str, url: str, timeout: float, client: Callable[[], Any]) -> CheckSpec:
    """GET another service's /livez (or any URL): 2xx healthy, a health+json 'warn' a warning."""
    shown = display_url(url)

    async def check() -> Outcome:
        t0 = time.perf_counter()
        response = await (await client()).get(url, timeout=timeout, headers={
            "accept": "application/health+json, application/json;q=0.9, */*;q=0.1"})
        ms = (time.perf_counter() - t0) * 1000
        details = {"url": shown, "http_status": response.status_code}
        if response.status_code >= 400:
            return Outcome(Status.CRITICAL, round(ms, 2), "ms", reason="http_status", details=details,
                           message=f"GET {shown} answered {response.status_code}")
        outcome = _latency_outcome(ms, timeout, f"GET {shown}", details)
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            reported = response.json().get("status")
            if reported in ("warn", "warning") and outcome.status is Status.HEALTHY:
                outcome.status, outcome.reason = Status.WARNING, "dependency_warn"
                outcome.message += "; it reports status warn"
        return outcome

    def advice(reason: str) -> str:
        if reason == "timeout":
            return (f"{name} ({shown}) did not answer within the timeout — check that service's health "
                    "and load, and the network path to it.")
        if reason == "http_status":
            return f"{name} ({shown}) answers with an error status — check that service's /health."
        if reason in ("slow", "dependency_warn"):
            return f"{name} ({shown}) is degraded — check that service's /health and latency dashboards."
        return (f"{name} unreachable at {shown} — check the URL configured for it (e.g. "
                "MATERIALS_SERVICE_URL) and that the service is running.")

    return CheckSpec(name, check, critical=False, readiness=False, component=name,
                     measurement="responseTime", component_type="component", advice=advice,
                     observed_unit="ms")


# --- telemetry export -------------------------------------------------------------------------

def telemetry_check(telemetry: Any, settings: Settings, *,
                    wall: Callable[[], float] = time.time) -> CheckSpec:
    """OTLP exporter failures (``telemetry.export_stats``): a failure in the last window warns."""
    window = max(60.0, 3 * settings.otel_metric_export_interval / 1000)

    def probe() -> Outcome:
        stats = telemetry.export_stats
        failures = dict(stats.failures)
        total = sum(failures.values())
        details: dict[str, Any] = {"failures": failures, "last_failure": stats.last_failure or None}
        if not settings.otlp_enabled:
            return Outcome(Status.HEALTHY, total, "failures", details=details,
                           message="OTLP push disabled; metrics are served at /metrics (pull)")
        recent = bool(stats.last_failure) and wall() - stats.last_failure < window
        if recent:
            return Outcome(Status.WARNING, total, "failures", reason="export_failed", details=details,
                           message=f"export failures {failures}, last {wall() - stats.last_failure:.0f}s ago")
        return Outcome(Status.HEALTHY, total, "failures", details=details,
                       message=f"no export failure in the last {window:.0f}s")

    endpoint = (display_url(settings.otel_exporter_otlp_metrics_endpoint or settings.otel_exporter_otlp_endpoint)
                if settings.otlp_enabled else "(disabled)")
    advice = (f"The OTLP exporter cannot deliver to {endpoint}: check OTEL_EXPORTER_OTLP_ENDPOINT and "
              "that the collector is running and reachable. Metrics stay available at /metrics; spans "
              "are dropped once the export queue is full.")
    return CheckSpec("telemetry_export", probe, critical=False, readiness=False, component="telemetry",
                     measurement="exportFailures", component_type="component", advice=advice,
                     observed_unit="failures")
