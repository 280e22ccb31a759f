"""The widget catalog: every dashboard panel defined once.

A widget is one chart or number: id, title, description, unit, its query (an ``expr`` tree that
renders PromQL and evaluates in-process), thresholds, and where it sits (dashboard, row, panel
type). From this list come the five Grafana dashboards (``grafana.py``), the ``/dashboard`` API and
the HTML page. Add your own with one call::

    from sizewise_otel.dashboard.widgets import register_widget
    from sizewise_otel.dashboard.expr import m, rate, sum_

    register_widget("duct_calcs", "Duct sizing rate", "Duct sizing calculations per second.",
                    unit="ops", dashboard="hvac-calculations", row="Throughput",
                    expr=sum_(rate(m("sizewise_hvac_calculations_total", sizewise_hvac_calculation_type="round_duct"))))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sizewise_otel.alerts import rules as alert_rules
from sizewise_otel.catalog import Kind, Signal
from sizewise_otel.dashboard.expr import (
    ClampMax,
    ClampMin,
    Expr,
    Raw,
    Tag,
    ThisProcess,
    Union,
    avg_,
    count_,
    increase,
    m,
    max_,
    per_group,
    quantile,
    rate,
    ratio,
    sum_,
)

# The five dashboards: key -> (uid, title, description).
DASHBOARDS: dict[str, tuple[str, str, str]] = {
    "system-overview": ("sizewise-system-overview", "SizeWise / System Overview",
                        "CPU, memory, disk, network and process resources of the SizeWise services."),
    "application-performance": ("sizewise-application-performance", "SizeWise / Application Performance",
                                "Request rate, errors and latency (RED) plus database and cache."),
    "hvac-calculations": ("sizewise-hvac-calculations", "SizeWise / HVAC Calculations",
                          "HVAC calculation throughput, outcomes and duration, and user sessions."),
    "microservices-health": ("sizewise-microservices-health", "SizeWise / Microservices Health",
                             "Health checks, live instances and the outbound calls to other services."),
    "error-tracking": ("sizewise-error-tracking", "SizeWise / Error Tracking",
                       "Errors captured by the error tracker: by type, severity, new groups and drops."),
}

PANEL_TYPES = ("timeseries", "stat", "gauge", "bargauge")

SRC, MNT = "sizewise_usage_source", "system_filesystem_mountpoint"  # Prometheus labels of the usage gauges
CHECK = "sizewise_health_check"

# Metrics the panels use that the OTel instrumentations or Prometheus define (not our catalog),
# with their labels. The integration test proves each of them exists on a live /metrics.
INSTRUMENTATION_METRICS: dict[str, tuple[str, ...]] = {
    # One series per instance (service.instance.id) from the exporter's resource; behind the
    # collector its ``instance`` label is the service.instance.id, in a direct scrape the target.
    "target_info": (),
}
# Series of the recording rules (prometheus/rules, from sizewise_otel/alerts/rules.py) that panels
# read where a fixed window is the point: the 6 h trend fit and the 7 d measured capacity. A panel
# keeps no hard-coded window of its own, and the alerts use the same windows. Prometheus only:
# in-process these widgets have no value (the embedded history holds no 6 h of raw samples).
RECORDED_METRICS: dict[str, tuple[str, ...]] = {
    **{alert_rules.fit_record(r): (_label,) for r, _label in zip(
        alert_rules.RESOURCES, (SRC, SRC, MNT), strict=True)},
    **{alert_rules.slope_record(r): (_label,) for r, _label in zip(
        alert_rules.RESOURCES, (SRC, SRC, MNT), strict=True)},
    alert_rules.INSTANCE_CAPACITY: (),
}
INSTRUMENTATION_METRICS.update(RECORDED_METRICS)
STANDARD_LABELS = ("job", "instance", "le")


@dataclass(frozen=True)
class Query:
    expr: Expr
    legend: str = "__auto"


@dataclass(frozen=True)
class Widget:
    id: str
    title: str
    description: str
    unit: str  # a Grafana unit id: percent, percentunit, s, reqps, ops, opm, bytes, Bps, short
    queries: tuple[Query, ...]
    dashboard: str
    row: str
    panel: str = "timeseries"
    # (value, colour) steps above the base colour; ``invert`` makes low values bad.
    thresholds: tuple[float, ...] = ()
    invert: bool = False
    width: int = 12
    height: int = 8
    decimals: int | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def expr(self) -> Expr:
        return self.queries[0].expr

    @property
    def promql(self) -> str:
        return self.expr.promql()

    def status(self, value: float | None) -> str:
        """ok / warning / critical from the thresholds (first step warning, second critical)."""
        if value is None or not self.thresholds:
            return "ok"
        levels = [value <= t if self.invert else value >= t for t in self.thresholds]
        if len(levels) > 1 and levels[1]:
            return "critical"
        return "warning" if levels[0] else "ok"


_REGISTRY: dict[str, Widget] = {}


def register_widget(id: str, title: str, description: str, *, unit: str, dashboard: str, row: str,
                    expr: Expr | str | None = None, legend: str = "__auto",
                    queries: tuple[Query, ...] = (), panel: str = "timeseries",
                    thresholds: tuple[float, ...] = (), invert: bool = False, width: int | None = None,
                    height: int = 8, decimals: int | None = None, replace: bool = False) -> Widget:
    """Add a widget: it appears in the API at once and in the dashboards after ``render``.

    ``expr`` is an expression tree (evaluated in-process too) or a PromQL string (Prometheus only).
    """
    if dashboard not in DASHBOARDS:
        raise ValueError(f"unknown dashboard {dashboard!r}; one of {sorted(DASHBOARDS)}")
    if panel not in PANEL_TYPES:
        raise ValueError(f"unknown panel type {panel!r}; one of {PANEL_TYPES}")
    if id in _REGISTRY and not replace:
        raise ValueError(f"widget {id!r} already registered")
    if isinstance(expr, str):
        expr = Raw(expr)
    if expr is not None:
        queries = (Query(expr, legend), *queries)
    if not queries:
        raise ValueError("a widget needs expr= or queries=")
    if width is None:
        width = 6 if panel in ("stat", "gauge") else 12
    w = Widget(id, title, description, unit, tuple(queries), dashboard, row, panel, tuple(thresholds),
               invert, width, height if panel == "timeseries" else min(height, 5), decimals)
    _REGISTRY[id] = w
    return w


def unregister_widget(id: str) -> None:
    _REGISTRY.pop(id, None)


def widgets() -> list[Widget]:
    return list(_REGISTRY.values())


def widget(id: str) -> Widget:
    return _REGISTRY[id]


# --- the built-in catalog ---------------------------------------------------------------------
HTTP = "http_server_request_duration_seconds"
HTTP_COUNT = f"{HTTP}_count"
CLIENT = "http_client_request_duration_seconds"
DB = "db_client_operation_duration_seconds"
CACHE_OPS = "sizewise_cache_operations_total"
CACHE_BY = ("sizewise_cache_backend", "sizewise_cache_operation")
CALCS = "sizewise_hvac_calculations_total"
CALC_DURATION = "sizewise_hvac_calculation_duration_seconds"
ERRORS = "sizewise_errors_total"
CONTAINER = "sizewise_container"


def _instances(*by: str) -> Expr:
    """Live instances: one ``target_info`` per (job, instance), i.e. per service.instance.id.

    Not Prometheus' ``up``: behind the collector that is the collector's own scrape. An instance
    that stops exporting drops out once the collector's exporter expires its series
    (``metric_expiration``), in a direct scrape once its target goes stale."""
    return ThisProcess(count_(count_(m("target_info"), "job", "instance"), *by))


def _http_5xx_share() -> Expr:
    """Service-wide 5xx share from the request counters summed over instances (never an average
    of per-process percentages: two workers where one fails show the true share)."""
    return (100 * sum_(rate(m(HTTP_COUNT, http_response_status_code="~5.."))).or_zero()
            / sum_(rate(m(HTTP_COUNT))))


def _builtin() -> None:
    r = register_widget
    # ---------------- System Overview -------------------------------------------------------
    d, row = "system-overview", "Resources"
    r("system_cpu", "CPU usage",
      "CPU usage in percent: of the container's CPU quota when there is one, of the host otherwise "
      "(label sizewise_usage_source). Warning at 80 %, critical at 95 %.",
      unit="percent", dashboard=d, row=row, expr=max_(m("sizewise_cpu_usage_percent"), "instance", SRC),
      legend="{{instance}} {{sizewise_usage_source}}", thresholds=(80, 95))
    r("system_memory", "Memory usage",
      "Memory usage in percent: of the container's memory limit when there is one, of the host "
      "otherwise. Warning at 85 %, critical at 95 %.",
      unit="percent", dashboard=d, row=row,
      expr=max_(m("sizewise_memory_usage_percent"), "instance", SRC),
      legend="{{instance}} {{sizewise_usage_source}}", thresholds=(85, 95))
    r("system_disk", "Disk usage", "Usage of the filesystem holding the service's data.",
      unit="percent", dashboard=d, row=row, panel="gauge",
      expr=max_(m("sizewise_disk_usage_percent"), "instance", MNT),
      legend="{{instance}} {{system_filesystem_mountpoint}}", thresholds=(85, 95))
    r("process_memory", "Process resident memory",
      "Resident set size of each service process (process.memory.usage).",
      unit="bytes", dashboard=d, row=row, panel="stat",
      expr=max_(m("process_memory_usage_bytes"), "instance"), legend="{{instance}}")
    r("network_io", "Network I/O",
      "Bytes per second sent (transmit) and received on all interfaces (system.network.io).",
      unit="Bps", dashboard=d, row=row,
      expr=sum_(rate(m("system_network_io_bytes_total")), "instance", "network_io_direction"),
      legend="{{instance}} {{network_io_direction}}")
    row = "Host and process (semconv system and process metrics)"
    r("host_cpu_by_state", "Host CPU by mode",
      "Share of CPU time per mode (user, system, idle) over all CPUs (system.cpu.utilization).",
      unit="percentunit", dashboard=d, row=row,
      expr=max_(ratio("system_cpu_utilization"), "instance", "cpu_mode"), legend="{{instance}} {{cpu_mode}}")
    r("host_memory_by_state", "Host memory by state",
      "Share of host memory used, free and cached (system.memory.utilization).",
      unit="percentunit", dashboard=d, row=row,
      expr=max_(ratio("system_memory_utilization"), "instance", "system_memory_state"),
      legend="{{instance}} {{system_memory_state}}")
    r("process_cpu", "Process CPU", "CPU utilization of the service process (user + system).",
      unit="percentunit", dashboard=d, row=row,
      expr=sum_(ratio("process_cpu_utilization"), "instance"), legend="{{instance}}")
    r("process_threads", "Process threads", "Threads in the service process.",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=max_(m("process_thread_count"), "instance"), legend="{{instance}}")
    r("process_open_fds", "Open file descriptors", "File descriptors the service process holds open.",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=max_(m("process_unix_file_descriptor_count"), "instance"), legend="{{instance}}")
    row = "Container (cgroup; empty outside a container)"
    r("container_cpu_throttling", "CPU throttling",
      "Share of CFS periods in which the container was throttled by its CPU quota (0 without a "
      "quota). Sustained throttling adds latency while host CPU looks idle. Warning at 25 %, "
      "critical at 50 %.",
      unit="percent", dashboard=d, row=row,
      expr=100 * max_(rate(m(f"{CONTAINER}_cpu_throttled_periods_total")), "instance")
      # floor: no quota means no periods at all, and 0 throttled of 0 is 0 %, not NaN
      / ClampMin(max_(rate(m(f"{CONTAINER}_cpu_periods_total")), "instance"), 0.001),
      legend="{{instance}}", thresholds=(25, 50))
    r("container_memory_vs_limit", "Memory working set vs limit",
      "Container memory working set (what the OOM killer and kubectl top count) and the "
      "container's memory limit; no limit line when the container has none.",
      unit="bytes", dashboard=d, row=row,
      expr=Union(Tag(max_(m("container_memory_working_set_bytes"), "instance"), "series", "working set"),
                 Tag(max_(m("k8s_container_memory_limit_current_bytes"), "instance"), "series", "limit")),
      legend="{{instance}} {{series}}")
    r("container_oom_kills", "OOM kills",
      "Processes in the container killed by the OOM killer per rate interval (a worker killed "
      "this way restarts and loses its in-flight requests). Any is a problem.",
      unit="short", dashboard=d, row=row,
      expr=max_(increase(m(f"{CONTAINER}_memory_oom_kills_total")), "instance"),
      legend="{{instance}}", thresholds=(1,))

    # ---------------- Application Performance ----------------------------------------------
    d, row = "application-performance", "Requests (RED)"
    r("http_request_rate", "Request rate", "Inbound HTTP requests per second, all routes.",
      unit="reqps", dashboard=d, row=row, panel="stat", expr=sum_(rate(m(HTTP_COUNT))), legend="requests")
    r("http_error_rate", "HTTP error rate",
      "Share of inbound requests answered with a 5xx status. Warning at 1 %, critical at 5 %.",
      unit="percent", dashboard=d, row=row, panel="stat", expr=_http_5xx_share(),
      legend="5xx %", thresholds=(1, 5))
    r("http_latency_p95", "p95 latency", "95th percentile of inbound request duration, all routes.",
      unit="s", dashboard=d, row=row, panel="stat", expr=quantile(0.95, HTTP), legend="p95",
      thresholds=(0.5, 1.0))
    r("http_active_requests", "Requests in flight", "Inbound HTTP requests being served right now.",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=sum_(m("http_server_active_requests")), legend="in flight")
    r("http_requests_by_route", "Requests by route", "Requests per second per route template.",
      unit="reqps", dashboard=d, row=row,
      expr=sum_(rate(m(HTTP_COUNT)), "http_route", "http_request_method"),
      legend="{{http_request_method}} {{http_route}}")
    r("http_latency_percentiles", "Latency percentiles", "p50, p95 and p99 of inbound request duration.",
      unit="s", dashboard=d, row=row,
      queries=(Query(quantile(0.5, HTTP), "p50"), Query(quantile(0.95, HTTP), "p95"),
               Query(quantile(0.99, HTTP), "p99")))
    r("http_latency_by_route", "p95 latency by route",
      "95th percentile duration per route template: the slowest routes are the bottlenecks.",
      unit="s", dashboard=d, row=row, expr=quantile(0.95, HTTP, "http_route"), legend="{{http_route}}")
    r("http_status_codes", "Responses by status code", "Responses per second by HTTP status code.",
      unit="reqps", dashboard=d, row=row,
      expr=sum_(rate(m(HTTP_COUNT)), "http_response_status_code"),
      legend="{{http_response_status_code}}")
    row = "Database"
    # db.client.operation.duration carries no operation name (semconv: not parsed from SQL text):
    # operations are told apart by database (system and namespace: SQL engines and Redis).
    r("db_operation_rate", "DB operations",
      "Database operations per second by database system and namespace (SQL engines and Redis).",
      unit="ops", dashboard=d, row=row,
      expr=sum_(rate(m(f"{DB}_count")), "db_system_name", "db_namespace"),
      legend="{{db_system_name}} {{db_namespace}}")
    r("db_latency_p95", "DB p95 latency by database",
      "95th percentile database operation duration per database system and namespace.",
      unit="s", dashboard=d, row=row, expr=quantile(0.95, DB, "db_system_name", "db_namespace"),
      legend="{{db_system_name}} {{db_namespace}}")
    r("db_pool_connections", "DB pool connections", "Pool connections used and idle, by pool.",
      unit="short", dashboard=d, row=row,
      expr=sum_(m("db_client_connection_count"), "db_client_connection_pool_name", "db_client_connection_state"),
      legend="{{db_client_connection_pool_name}} {{db_client_connection_state}}")
    row = "Cache"
    r("cache_hit_ratio", "Cache hit ratio", "Share of cache reads that were hits. Low is bad.",
      unit="percent", dashboard=d, row=row, panel="stat",
      expr=100 * sum_(rate(m(CACHE_OPS, sizewise_cache_result="hit"))).or_zero()
      / sum_(rate(m(CACHE_OPS, sizewise_cache_result="~hit|miss"))),
      legend="hit %", thresholds=(80, 50), invert=True)
    r("cache_hit_ratio_by_operation", "Hit ratio by backend and operation",
      "Cache hit ratio per backend and operation: the lowest is the first to tune.",
      unit="percent", dashboard=d, row=row,
      expr=100 * sum_(rate(m(CACHE_OPS, sizewise_cache_result="hit")), *CACHE_BY)
      / sum_(rate(m(CACHE_OPS, sizewise_cache_result="~hit|miss")), *CACHE_BY),
      legend="{{sizewise_cache_backend}} {{sizewise_cache_operation}}")
    r("cache_operations", "Cache operations", "Cache operations per second by operation and result.",
      unit="ops", dashboard=d, row=row,
      expr=sum_(rate(m(CACHE_OPS)), "sizewise_cache_operation", "sizewise_cache_result"),
      legend="{{sizewise_cache_operation}} {{sizewise_cache_result}}")
    r("cache_latency_p95", "Cache p95 latency", "95th percentile latency of cache operations.",
      unit="s", dashboard=d, row=row,
      expr=quantile(0.95, "sizewise_cache_operation_duration_seconds", *CACHE_BY),
      legend="{{sizewise_cache_backend}} {{sizewise_cache_operation}}")

    # ---------------- HVAC Calculations -----------------------------------------------------
    d, row = "hvac-calculations", "Throughput"
    r("hvac_calculations_per_minute", "Calculations per minute", "HVAC calculations completed per minute.",
      unit="opm", dashboard=d, row=row, panel="stat", expr=60 * sum_(rate(m(CALCS))), legend="per minute")
    r("hvac_success_ratio", "Calculation success ratio",
      "Share of calculations with outcome success. Below 95 % warns, below 90 % is critical.",
      unit="percent", dashboard=d, row=row, panel="stat",
      expr=100 * sum_(rate(m(CALCS, sizewise_hvac_calculation_outcome="success"))).or_zero() / sum_(rate(m(CALCS))),
      legend="success %", thresholds=(95, 90), invert=True)
    r("active_sessions", "Active sessions", "User sessions currently active.",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=sum_(m("sizewise_sessions_active")), legend="sessions")
    r("hvac_calculations_by_type", "Calculations by type", "Calculations per minute by calculation type.",
      unit="opm", dashboard=d, row=row,
      expr=60 * sum_(rate(m(CALCS)), "sizewise_hvac_calculation_type"), legend="{{sizewise_hvac_calculation_type}}")
    r("hvac_outcomes", "Calculation outcomes",
      "Calculations per second by outcome (success, invalid, error).",
      unit="ops", dashboard=d, row=row, expr=sum_(rate(m(CALCS)), "sizewise_hvac_calculation_outcome"),
      legend="{{sizewise_hvac_calculation_outcome}}")
    row = "Duration"
    r("hvac_duration_p95", "p95 duration by type",
      "95th percentile time spent computing each calculation type.",
      unit="s", dashboard=d, row=row, expr=quantile(0.95, CALC_DURATION, "sizewise_hvac_calculation_type"),
      legend="{{sizewise_hvac_calculation_type}}")
    r("hvac_duration_mean", "Mean duration by type", "Average time spent computing each calculation type.",
      unit="s", dashboard=d, row=row,
      expr=sum_(rate(m(f"{CALC_DURATION}_sum")), "sizewise_hvac_calculation_type")
      / sum_(rate(m(f"{CALC_DURATION}_count")), "sizewise_hvac_calculation_type"),
      legend="{{sizewise_hvac_calculation_type}}")

    # ---------------- Microservices Health --------------------------------------------------
    d, row = "microservices-health", "Health checks"
    r("failing_checks", "Failing checks",
      "Health checks currently in warning or critical state, counted per instance; 0 when all are "
      "healthy, no data when no instance reports health.",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=sum_(m("sizewise_health_status", sizewise_health_state="!healthy")), legend="failing",
      thresholds=(1, 2))
    r("targets_up", "Instances up",
      "Instances (service.instance.id: one per worker process) of the selected jobs exporting "
      "telemetry. A killed instance drops out when the collector expires its series "
      "(metric_expiration, 60 s in compose).",
      unit="short", dashboard=d, row=row, panel="stat", expr=_instances(), legend="instances")
    r("health_status", "Health by check",
      "Health per check: 0 healthy, 1 warning, 2 critical (from sizewise_health_status, one series per "
      "state of each check).",
      unit="short", dashboard=d, row=row, panel="bargauge",
      expr=_health_rank(CHECK), legend="{{sizewise_health_check}}", thresholds=(1, 2), width=12)
    r("health_check_duration", "Health check duration", "Duration of the last run of each health check.",
      unit="s", dashboard=d, row=row,
      expr=max_(m("sizewise_health_check_duration_seconds"), CHECK), legend="{{sizewise_health_check}}")
    r("service_up", "Service instances up",
      "Instances exporting telemetry, per service (job), from target_info per service.instance.id.",
      unit="short", dashboard=d, row=row, expr=_instances("job"), legend="{{job}}")
    row = "Dependencies (outbound HTTP)"
    r("upstream_request_rate", "Outbound request rate", "Calls per second to other services, by server.",
      unit="reqps", dashboard=d, row=row,
      expr=sum_(rate(m(f"{CLIENT}_count")), "server_address"), legend="{{server_address}}")
    r("upstream_latency_p95", "Outbound p95 latency", "95th percentile duration of calls to other services.",
      unit="s", dashboard=d, row=row, expr=quantile(0.95, CLIENT, "server_address"),
      legend="{{server_address}}")
    r("upstream_error_rate", "Outbound error rate",
      "Share of calls to other services answered with 4xx/5xx (error.type set). Calls that fail "
      "before a response (refused, timed out) are not counted: the httpx instrumentation records "
      "no duration for them.",
      unit="percent", dashboard=d, row=row, panel="stat",
      expr=100 * sum_(rate(m(f"{CLIENT}_count", error_type="!"))).or_zero()
      / sum_(rate(m(f"{CLIENT}_count"))),
      legend="errors %", thresholds=(1, 5))

    _redis_server()

    # ---------------- Error Tracking --------------------------------------------------------
    d, row = "error-tracking", "Errors"
    r("error_rate_percent", "Error rate (5xx share)",
      "Share of HTTP requests answered with 5xx over the rate interval, from the request counters "
      "of every instance (sizewise_error_rate_percent is per process and cannot be aggregated).",
      unit="percent", dashboard=d, row=row, panel="stat", expr=_http_5xx_share(), legend="5xx %",
      thresholds=(1, 5))
    r("new_error_groups", "New error groups", "Error groups seen for the first time (or regressed).",
      unit="short", dashboard=d, row=row, panel="stat",
      expr=sum_(increase(m("sizewise_error_groups_new_total"))).or_zero(), legend="new groups",
      thresholds=(1, 10))
    r("errors_dropped", "Dropped error events", "Error events not stored (queue full or store down).",
      unit="ops", dashboard=d, row=row, panel="stat",
      expr=sum_(rate(m("sizewise_errors_dropped_total"))).or_zero(), legend="dropped/s",
      thresholds=(0.001, 1))
    r("errors_total_rate", "Errors per second", "Errors captured per second, all types.",
      unit="ops", dashboard=d, row=row, panel="stat", expr=sum_(rate(m(ERRORS))).or_zero(),
      legend="errors/s")
    r("errors_by_type", "Errors by type", "Errors captured per second by exception type.",
      unit="ops", dashboard=d, row=row, expr=sum_(rate(m(ERRORS)), "error_type"), legend="{{error_type}}")
    r("errors_by_severity", "Errors by severity", "Errors captured per rate interval by severity.",
      unit="short", dashboard=d, row=row, expr=sum_(increase(m(ERRORS)), "sizewise_error_severity"),
      legend="{{sizewise_error_severity}}")
    r("http_5xx_by_route", "5xx responses by route", "Server errors per second by route template.",
      unit="reqps", dashboard=d, row=row,
      expr=sum_(rate(m(HTTP_COUNT, http_response_status_code="~5..")), "http_route"),
      legend="{{http_route}}")

    _capacity_planning()
    _traffic_distribution()


REDIS = "sizewise_cache_redis"
REDIS_SERVER = ("server_address", "server_port")


def _redis_server() -> None:
    """The Redis server behind the cache, from INFO. Every instance reports the same server, so
    each figure is the max per server over instances (a sum would count it once per worker)."""
    r = register_widget
    d, row = "microservices-health", "Cache server (Redis INFO)"
    legend = "{{server_address}}:{{server_port}}"
    lookups = f"{REDIS}_keyspace_lookups_total"
    r("redis_memory", "Redis memory vs maxmemory",
      "Memory the Redis server uses (used_memory) and its maxmemory; no maxmemory line when the "
      "server has none. At maxmemory Redis evicts keys (or refuses writes, per its policy).",
      unit="bytes", dashboard=d, row=row, width=12,
      expr=Union(Tag(max_(m(f"{REDIS}_memory_used_bytes"), *REDIS_SERVER), "series", "used"),
                 Tag(max_(m(f"{REDIS}_memory_limit_bytes"), *REDIS_SERVER), "series", "maxmemory")),
      legend=f"{legend} {{{{series}}}}")
    r("redis_evictions", "Redis evictions",
      "Keys the Redis server evicted per second to stay under maxmemory. Sustained evictions near "
      "maxmemory (RedisEvictionsNearMaxmemory) mean the cached working set does not fit.",
      unit="ops", dashboard=d, row=row, width=6,
      expr=max_(rate(m(f"{REDIS}_keys_evicted_total")), *REDIS_SERVER), legend=legend)
    # The server's own counters since it started (or CONFIG RESETSTAT): INFO changes once per
    # 30 s tier, so a ratio of rates over a short $__rate_interval would often be 0/0; the recent
    # picture is the lookups panel beside it, the application's own ratio is on Application Performance.
    r("redis_keyspace_hit_ratio", "Redis keyspace hit ratio",
      "Share of key lookups on the Redis server that found the key (keyspace_hits / hits + misses) "
      "since the server started or its stats were reset, all of the server's clients included. "
      "Below 80 % warns, below 50 % is critical.",
      unit="percent", dashboard=d, row=row, panel="stat", width=6,
      expr=max_(100 * sum_(m(lookups, sizewise_cache_result="hit"), "job", "instance", *REDIS_SERVER)
                / sum_(m(lookups), "job", "instance", *REDIS_SERVER), *REDIS_SERVER),
      legend=legend, thresholds=(80, 50), invert=True)
    r("redis_keyspace_lookups", "Redis key lookups",
      "Key lookups per second on the Redis server by result (hit, miss), all of its clients.",
      unit="ops", dashboard=d, row=row, width=12,
      expr=max_(rate(m(lookups)), *REDIS_SERVER, "sizewise_cache_result"),
      legend=f"{legend} {{{{sizewise_cache_result}}}}")

def _health_rank(*by: str) -> Expr:
    """0 healthy, 1 warning, 2 critical per ``by`` (the worst state), from the one-series-per-state gauge."""
    health = "sizewise_health_status"
    return max_(m(health, sizewise_health_state="warning"), *by) \
        + 2 * max_(m(health, sizewise_health_state="critical"), *by)


DAY = 86400
PROJECTION_CAP_DAYS = 365  # a flat or shrinking trend "fills" never: shown as a year


def _days_until_full(metric: str) -> Expr:
    """Days until the 6 h linear trend reaches 100 %: (100 - fit now) / slope per day, from 0 to a
    year (a flat or falling trend divides by a tiny floor and reads as the cap)."""
    fit, slope = m(alert_rules.fit_record(metric)), m(alert_rules.slope_record(metric))
    return ClampMin(ClampMax((100 - fit) / ClampMin(DAY * slope, 1e-6), PROJECTION_CAP_DAYS), 0)


def _per_resource(fn: Callable[[str], Expr]) -> Expr:
    """One series per resource (label ``resource``: cpu, memory, disk) of ``fn(metric)``."""
    cpu, memory, disk = alert_rules.RESOURCES
    return Union(Union(Tag(fn(cpu), "resource", "cpu"), Tag(fn(memory), "resource", "memory")),
                 Tag(fn(disk), "resource", "disk"))


def _capacity_planning() -> None:
    r = register_widget
    fit_note = (f"Linear fit over the last {alert_rules.FIT_WINDOW} (predict_linear / deriv, recorded "
                "by Prometheus), as the node mixin does; capped at a year, which also means 'not "
                "growing'. Prometheus only.")
    cpu, memory, disk = alert_rules.RESOURCES
    d, row = "system-overview", "Capacity planning (6 h trend, projected)"
    r("disk_days_until_full", "Disk full in",
      f"Days until the data disk reaches 100 % at its current trend. {fit_note} DiskFillsWithin24h "
      "and DiskFillsWithin4h alert on the same fit. Warning under 7 days, critical under 1.",
      unit="d", dashboard=d, row=row, panel="stat", width=8, decimals=1, expr=_days_until_full(disk),
      legend="{{instance}} {{system_filesystem_mountpoint}}", thresholds=(7, 1), invert=True)
    r("memory_days_until_limit", "Memory at limit in",
      f"Days until memory reaches 100 % of the container limit (of the host without one) at its "
      f"current trend. {fit_note} MemoryLimitWithin24h alerts on the same fit. Warning under 7 "
      "days, critical under 1.",
      unit="d", dashboard=d, row=row, panel="stat", width=8, decimals=1, expr=_days_until_full(memory),
      legend="{{instance}} {{sizewise_usage_source}}", thresholds=(7, 1), invert=True)
    r("cpu_days_until_saturation", "CPU at 100 % in",
      f"Days until CPU usage (of the quota, of the host without one) reaches 100 % at its current "
      f"trend. {fit_note} Warning under 7 days, critical under 1.",
      unit="d", dashboard=d, row=row, panel="stat", width=8, decimals=1, expr=_days_until_full(cpu),
      legend="{{instance}} {{sizewise_usage_source}}", thresholds=(7, 1), invert=True)
    r("resource_trend", "Usage trend per day",
      f"Slope of CPU, memory and disk usage over the last {alert_rules.FIT_WINDOW}, in percentage "
      "points per day: the CPU trend beside memory growth and disk fill rate. Prometheus only.",
      unit="short", dashboard=d, row=row,
      expr=_per_resource(lambda metric: DAY * m(alert_rules.slope_record(metric))),
      legend="{{instance}} {{resource}} {{sizewise_usage_source}}{{system_filesystem_mountpoint}}")
    r("resource_projection_24h", "Usage projected in 24 h",
      f"CPU, memory and disk usage 24 hours ahead on the {alert_rules.FIT_WINDOW} trend (fit now + 24 h "
      "x slope = predict_linear(x[6h], 86400)). Over 100 % means the resource runs out within a day.",
      unit="percent", dashboard=d, row=row,
      expr=_per_resource(lambda metric: m(alert_rules.fit_record(metric))
                         + DAY * m(alert_rules.slope_record(metric))),
      legend="{{instance}} {{resource}} {{sizewise_usage_source}}{{system_filesystem_mountpoint}}",
      thresholds=(85, 100))

    d, row = "application-performance", "Capacity (measured per instance)"
    capacity = (f"Capacity is measured, not configured: the highest request rate one instance of the "
                f"job sustained over 5 minutes in the last {alert_rules.CAPACITY_WINDOW} while it met "
                f"the latency SLO itself (at most {alert_rules.SLO_BUDGET:.0%} of its requests slower "
                f"than {alert_rules.SLO_LATENCY_SECONDS} s). A lower bound: the busiest good 5 minutes "
                "seen so far, not a limit found by a load test, so 100 % means 'at the record', and the "
                "record rises while latency holds.")
    per_instance = sum_(rate(m(HTTP_COUNT)), "job", "instance")
    r("instance_load_vs_capacity", "Requests per instance vs measured capacity",
      f"Requests per second of each instance, and the job's measured capacity per instance. {capacity}",
      unit="reqps", dashboard=d, row=row,
      queries=(Query(per_instance, "{{instance}}"),
               Query(max_(m(alert_rules.INSTANCE_CAPACITY), "job"), "capacity {{job}}")))
    r("instance_capacity_utilization", "Load vs measured capacity",
      f"Each instance's request rate as a share of the measured capacity. {capacity} Warning at "
      "80 %, critical at 100 %.",
      unit="percent", dashboard=d, row=row, panel="bargauge",
      expr=100 * per_instance / m(alert_rules.INSTANCE_CAPACITY), legend="{{instance}}",
      thresholds=(80, 100))


def _traffic_distribution() -> None:
    r = register_widget
    d, row = "application-performance", "Traffic distribution (per instance)"
    per_instance = sum_(rate(m(HTTP_COUNT)), "job", "instance")
    fraction = per_group("/", per_instance, sum_(rate(m(HTTP_COUNT)), "job"), "job")
    share = 100 * fraction
    r("http_requests_per_instance", "Requests per instance",
      "Requests per second served by each instance (service.instance.id): behind an even load "
      "balancer the lines lie together.",
      unit="reqps", dashboard=d, row=row, expr=per_instance, legend="{{instance}}")
    r("http_request_share_per_instance", "Share of requests per instance",
      "Each instance's share of its job's requests, from the request counters (with every instance "
      "selected; a narrower selection is its own total). Even is 100 % / instances.",
      unit="percent", dashboard=d, row=row, expr=share, legend="{{instance}}")
    r("http_load_vs_fair_share", "Load vs fair share",
      "Each instance's share of the job's requests times the live instances (target_info): 1 is a "
      f"fair share. TrafficImbalance fires above {alert_rules.IMBALANCE_FACTOR:g} for 10 minutes "
      f"(with at least 2 instances and over {alert_rules.IMBALANCE_MIN_RPS:g} request/s).",
      unit="short", dashboard=d, row=row, panel="bargauge", decimals=2,
      expr=per_group("*", fraction, _instances("job"), "job"), legend="{{instance}}",
      thresholds=(alert_rules.IMBALANCE_FACTOR, 2))
    r("http_latency_p95_per_instance", "p95 latency per instance",
      "95th percentile request duration per instance: one slow instance behind the balancer stands "
      "out here while the service-wide percentile hides it.",
      unit="s", dashboard=d, row=row, expr=quantile(0.95, HTTP, "job", "instance"), legend="{{instance}}",
      thresholds=(0.5, 1.0))
    r("health_per_instance", "Health per instance (readiness)",
      "Each instance's health checks: 0 healthy, 1 warning, 2 critical. A critical readiness check "
      "(the critical checks by default, e.g. the database) makes that pod's /readyz answer 503, so "
      "Kubernetes takes it out of the Service endpoints: the flip shows here per pod, as far as the "
      "app can see it (the gauge has no readiness label: critical non-readiness checks show too).",
      unit="short", dashboard=d, row=row, expr=_health_rank("job", "instance", CHECK),
      legend="{{instance}} {{sizewise_health_check}}", thresholds=(1, 2))


_builtin()
BUILTIN_IDS = frozenset(_REGISTRY)


def metric_queries(sig: Signal) -> list[tuple[str, Expr]]:
    """The derived series ``/dashboard/metrics/{name}`` shows for a catalog signal.

    Counters: per-second rate by attribute; histograms: request rate and p95; gauges and
    up-down counters: their value by attribute (averaged for percentages, summed otherwise).
    """
    name, labels = sig.prom_name, sig.prom_labels
    if sig.kind in (Kind.COUNTER, Kind.OBSERVABLE_COUNTER):
        return [("rate", sum_(rate(m(name)), *labels))]
    if sig.kind is Kind.HISTOGRAM:
        return [("rate", sum_(rate(m(f"{name}_count")))), ("p95", quantile(0.95, name))]
    agg = avg_ if sig.unit == "%" else sum_
    sel = ratio(name) if sig.unit == "1" else m(name)
    return [("value", agg(sel, *labels))]
