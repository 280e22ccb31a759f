"""Alert rules as data: the spec's ``AlertRule``/``AlertSeverity`` and SizeWise's default catalog.

One catalog feeds both evaluation paths:

* the full stack: ``prometheus_files.py`` turns every rule into a Prometheus alerting rule (plus the
  recording rules below) and a promtool unit test;
* the embedded mode: ``evaluator.py`` evaluates every *threshold-style* rule (a metric, optional
  label matchers, an optional ``increase`` over a window, a condition, a threshold and a ``for``
  duration) in-process. Rules that need PromQL (``expr`` set: ratios of rates, burn rates, ``up``)
  are evaluated by Prometheus only.

Every metric and label used here exists in ``sizewise_otel.catalog`` (tests check it), apart from
what the push path adds: ``target_info`` (one series per ``service.instance.id``) and ``up``.
"""

from __future__ import annotations

import enum
import math
import operator
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

GRAFANA_BASE_URL = "http://localhost:3000"
# Where `runbook_url` points: this repository's docs/runbooks.md, by a path relative to the checkout
# by default. A deployment that publishes the docs sets SIZEWISE_RUNBOOK_BASE_URL (e.g. its wiki or
# repository URL of runbooks.md) and renders its own copy of the rules.
RUNBOOK_BASE_URL = "docs/runbooks.md"
RUNBOOK_BASE_URL_ENV = "SIZEWISE_RUNBOOK_BASE_URL"


def runbook_base_url() -> str:
    return os.environ.get(RUNBOOK_BASE_URL_ENV) or RUNBOOK_BASE_URL

DASHBOARDS = {
    "system": "sizewise-system-overview",
    "performance": "sizewise-application-performance",
    "hvac": "sizewise-hvac-calculations",
    "services": "sizewise-microservices-health",
    "errors": "sizewise-error-tracking",
}


class AlertSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


CONDITIONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
MATCH_OPS = ("=", "!=", "=~", "!~")
FUNCTIONS = ("", "increase")
VALUE_FORMATS = {  # how the ``value`` annotation shows $value
    "number": '{{ $value | printf "%.2f" }}',
    "count": '{{ $value | printf "%.0f" }}',
    "percent": '{{ $value | printf "%.1f" }}%',
    "ratio": "{{ $value | humanizePercentage }}",
}

Matcher = tuple[str, str, str]  # (label, op, value), op one of MATCH_OPS


def _humanize_percentage(v: float) -> str:
    """Prometheus' ``humanizePercentage`` for the range the rules produce (1 % .. 999 %)."""
    pct = v * 100
    if not 1 <= abs(pct) < 1000:
        raise ValueError(f"humanizePercentage replica only covers 1%..999%, got {pct}")
    return f"{pct:.4g}%"


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)


@dataclass(frozen=True)
class AlertRule:
    """One alert. The first seven fields are the spec's; the rest have working defaults."""

    name: str
    metric_name: str
    condition: str
    threshold: float
    duration_seconds: int
    severity: AlertSeverity
    description: str
    summary: str = ""
    alert: str = ""  # Prometheus alertname; CamelCase of name by default
    matchers: tuple[Matcher, ...] = ()
    function: str = ""  # "" (current value) or "increase" (over window_seconds, summed by `by`)
    window_seconds: int = 300
    by: tuple[str, ...] = ("job",)
    expr: str = ""  # PromQL override: then Prometheus only, unless in_process says otherwise
    in_process: bool | None = None  # None: automatic; True: metric/function/threshold are the
    # in-process equivalent of `expr`
    details: str = ""  # second sentence of the description annotation (templated)
    value_format: str = "number"
    dashboard: str = DASHBOARDS["system"]
    group: str = "sizewise.system"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"alert rule name must be snake_case, got {self.name!r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {sorted(CONDITIONS)}, got {self.condition!r}")
        if self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {FUNCTIONS}, got {self.function!r}")
        if self.value_format not in VALUE_FORMATS:
            raise ValueError(f"value_format must be one of {sorted(VALUE_FORMATS)}")
        if self.duration_seconds < 0 or self.window_seconds <= 0:
            raise ValueError("duration_seconds must be >= 0 and window_seconds > 0")
        for label, op, _ in self.matchers:
            if op not in MATCH_OPS or not label:
                raise ValueError(f"bad matcher on {label!r}: {op!r}")
        object.__setattr__(self, "severity", AlertSeverity(self.severity))
        object.__setattr__(self, "threshold", float(self.threshold))

    # --- identity ------------------------------------------------------------------------
    @property
    def alertname(self) -> str:
        return self.alert or _camel(self.name)

    @property
    def for_duration(self) -> str:
        return _duration(self.duration_seconds)

    @property
    def runbook_anchor(self) -> str:
        """GitHub's anchor for the ``## AlertName`` heading in docs/runbooks.md."""
        return self.alertname.lower()

    @property
    def runbook_url(self) -> str:
        return f"{runbook_base_url()}#{self.runbook_anchor}"

    @property
    def dashboard_url(self) -> str:
        return f"{GRAFANA_BASE_URL}/d/{self.dashboard}"

    @property
    def embedded(self) -> bool:
        """Whether the in-process evaluator can evaluate this rule (threshold-style, no PromQL)."""
        if self.in_process is not None:
            return self.in_process
        return not self.expr and self.metric_name != "up"

    # --- PromQL ----------------------------------------------------------------------------
    @property
    def selector(self) -> str:
        inner = ", ".join(f'{label}{op}"{value}"' for label, op, value in self.matchers)
        return f"{self.metric_name}{{{inner}}}" if inner else self.metric_name

    @property
    def threshold_text(self) -> str:
        return f"{self.threshold:g}"

    @property
    def promql(self) -> str:
        if self.expr:
            return self.expr
        base = self.selector
        if self.function == "increase":
            base = f"sum by ({', '.join(self.by)}) (increase({base}[{_duration(self.window_seconds)}]))"
        return f"{base} {self.condition} {self.threshold_text}"

    # --- evaluation --------------------------------------------------------------------------
    def compare(self, value: float) -> bool:
        return not math.isnan(value) and CONDITIONS[self.condition](value, self.threshold)

    def matches(self, labels: Mapping[str, str]) -> bool:
        for label, op, want in self.matchers:
            have = labels.get(label, "")
            if (op == "=" and have != want) or (op == "!=" and have == want):
                return False
            if (op == "=~" and not re.fullmatch(want, have)) or (op == "!~" and re.fullmatch(want, have)):
                return False
        return True

    # --- annotations ---------------------------------------------------------------------------
    def annotation_templates(self) -> dict[str, str]:
        details = self.details or (
            f"{self.metric_name}"
            f"{' increase over ' + _duration(self.window_seconds) if self.function else ''}"
            f" {self.condition} {self.threshold_text} for {self.for_duration} on {{{{ $labels.job }}}}."
        )
        return {
            "summary": self.summary or self.description,
            "description": f"{self.description}. {details}",
            "value": VALUE_FORMATS[self.value_format],
            "runbook_url": self.runbook_url,
            "dashboard_url": self.dashboard_url,
        }

    def annotations(self, labels: Mapping[str, str], value: float) -> dict[str, str]:
        """The annotations with templates expanded exactly as Prometheus expands them."""
        return {k: expand(v, labels, value) for k, v in self.annotation_templates().items()}


_TEMPLATE = re.compile(r"{{\s*(.*?)\s*}}")


def expand(template: str, labels: Mapping[str, str], value: float) -> str:
    """Expand the small template subset the catalog uses, exactly as Prometheus does:
    ``$labels.x``, ``$value | printf "<fmt>"`` and ``$value | humanizePercentage``."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith("$labels."):
            return str(labels.get(body[len("$labels."):], ""))
        printf = re.fullmatch(r'\$value \| printf "(%\.\d+f)"', body)
        if printf:
            return printf.group(1) % value
        if body == "$value | humanizePercentage":
            return _humanize_percentage(value)
        raise ValueError(f"unsupported template expression {{{{ {body} }}}}")

    return _TEMPLATE.sub(one, template)


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    group: str = "sizewise.recording"


# --- the default catalog ------------------------------------------------------------------------

HTTP = "http_server_request_duration_seconds"
SLO_LATENCY_SECONDS = "0.5"  # a request slower than this spends latency error budget
SLO_OBJECTIVE = 0.99  # 99 % of requests faster than SLO_LATENCY_SECONDS
SLO_BUDGET = round(1 - SLO_OBJECTIVE, 6)
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def _slo_record(window: str) -> RecordingRule:
    return RecordingRule(
        f"job:http_server_request_latency_slo_miss:ratio_rate{window}",
        f'1 - (sum by (job) (rate({HTTP}_bucket{{le="{SLO_LATENCY_SECONDS}"}}[{window}]))'
        f" / sum by (job) (rate({HTTP}_count[{window}])))",
        "sizewise.recording.slo",
    )


# --- instance liveness on the push path ------------------------------------------------------
# Behind the collector, Prometheus' `up` is the collector's. An app instance (one process, one
# service.instance.id) is alive while its `target_info` series is exported: the collector's
# Prometheus exporter drops every series of an instance that stopped pushing after its
# `metric_expiration` (collector/config.yaml: 60s = 4 of compose's 15 s OTLP export intervals).
# Directly scraped targets (an `up` series with the same job and instance) are left to
# ScrapeTargetDown. Kill -> Slack: expiration 60s + scrape 10s + two rule evaluations 30s + for 1m
# + Alertmanager's group_wait 10s = about 3 min, under the 5 min the design asks for.
# An instance is "lost" when it vanished and the service now runs fewer instances than it held
# steadily (for STABLE_WINDOW) within the last LIVENESS_WINDOW: a replacement (new instance id
# after a restart or a worker recycle) resolves the alert, and the minute or so during which a
# dying instance's series linger beside its replacement's does not raise the expected size.
LIVENESS_WINDOW = "1h"  # a lost instance alerts for at most this long (then it is forgotten)
ABSENCE_WINDOW = "1d"  # a service seen within this window and absent now is "absent"
STABLE_WINDOW = "2m"  # > expiration + one export: a replacement's overlap is not a new size
COLLECTOR_JOB = "otel-collector"  # prometheus.yml's scrape of the collector's exporter
EXPECTED_JOBS = ("sizewise/sizewise-hvac",)  # absent even if never seen (compose's service.namespace/name)
INSTANCE_UP = "job_instance:sizewise_instance:up"
INSTANCES = "job:sizewise_instances:count"
INSTANCES_STABLE = f"job:sizewise_instances:min{STABLE_WINDOW}"

LIVENESS_RECORDS: tuple[RecordingRule, ...] = (
    RecordingRule(INSTANCE_UP, "group by (job, instance) (target_info unless on (job, instance) up)",
                  "sizewise.recording.liveness"),
    RecordingRule(INSTANCES, f"count by (job) ({INSTANCE_UP})", "sizewise.recording.liveness"),
    RecordingRule(INSTANCES_STABLE, f"min_over_time({INSTANCES}[{STABLE_WINDOW}])",
                  "sizewise.recording.liveness"),
)
_COLLECTOR_DOWN = f'unless on () (up{{job="{COLLECTOR_JOB}"}} == 0)'
# Fewer instances now than the service held steadily in the last hour (none at all included).
_EXPECTED = f"max_over_time({INSTANCES_STABLE}[{LIVENESS_WINDOW}])"
_SHRUNK = f"({INSTANCES} < on (job) {_EXPECTED} or {_EXPECTED} unless on (job) {INSTANCES})"
_ABSENT = " or ".join(f'absent_over_time({INSTANCE_UP}{{job="{job}"}}[5m])' for job in EXPECTED_JOBS)

# --- capacity planning (the node mixin's way: a linear fit over hours, projected ahead) ---------
# One fit window for panels and alerts. Panels read the recorded fit and slope (a panel carries no
# hard-coded window); alerts call predict_linear directly over the same window, which is the same
# line: predict_linear(x[w], h) = fit(now) + h * slope.
FIT_WINDOW = "6h"
# sizewise_health_status has one series per state of each check: a check is critical where its
# critical series is 1.
HEALTH_CRITICAL: Matcher = ("sizewise_health_state", "=", "critical")
RESOURCES = ("sizewise_cpu_usage_percent", "sizewise_memory_usage_percent", "sizewise_disk_usage_percent")


def fit_record(metric: str) -> str:
    """The 6 h least-squares line's value now (``predict_linear(x[6h], 0)``), per series."""
    return f"instance:{metric}:predict_linear{FIT_WINDOW}"


def slope_record(metric: str) -> str:
    """The 6 h least-squares slope (``deriv(x[6h])``), in the metric's unit per second."""
    return f"instance:{metric}:deriv{FIT_WINDOW}"


def predict(metric: str, horizon_seconds: int) -> str:
    return f"predict_linear({metric}[{FIT_WINDOW}], {horizon_seconds})"


CAPACITY_PROJECTION_RECORDS: tuple[RecordingRule, ...] = tuple(
    rule for metric in RESOURCES for rule in (
        RecordingRule(fit_record(metric), predict(metric, 0), "sizewise.recording.capacity"),
        RecordingRule(slope_record(metric), f"deriv({metric}[{FIT_WINDOW}])", "sizewise.recording.capacity"),
    )
)

# Measured capacity of one instance: the highest request rate a single instance sustained (over
# 5 minutes) in the last CAPACITY_WINDOW while meeting the latency SLO itself (at most SLO_BUDGET of
# its requests slower than SLO_LATENCY_SECONDS). A lower bound: it is the busiest good five
# minutes seen, not a limit found by a load test; an instance never pushed hard reads "at 100 %"
# at its own record and the record moves up as long as latency holds.
CAPACITY_WINDOW = "7d"
INSTANCE_RATE = "instance:http_server_requests:rate5m"
INSTANCE_SLO_MISS = "instance:http_server_request_latency_slo_miss:ratio_rate5m"
INSTANCE_BEST_RATE = "job:http_server_requests_per_instance_within_slo:max_rate5m"
JOB_CAPACITY = f"job:http_server_requests_per_instance:capacity{CAPACITY_WINDOW}"
INSTANCE_CAPACITY = f"instance:http_server_requests:capacity{CAPACITY_WINDOW}"

# --- traffic distribution: one instance taking more than its share -----------------------------
IMBALANCE_FACTOR = 1.5  # alert above 1.5 x the fair share (1 / live instances)
IMBALANCE_MIN_RPS = 1.0  # below this job-wide rate, a few requests make any split look skewed
# The job's total from the same recorded series as each instance's part: one evaluation, so the
# shares add up to 1 (job:http_server_requests:rate5m is another group's, evaluated at another
# moment, and while rates ramp up the ratio of the two would be off by several percent).
_JOB_TOTAL = "sum by (job) (instance:http_server_requests:rate5m)"


def _capacity_records(slo_latency: str, slo_budget: float) -> tuple[RecordingRule, ...]:
    group = "sizewise.recording.capacity"
    return (
        RecordingRule(INSTANCE_RATE, f"sum by (job, instance) (rate({HTTP}_count[5m]))", group),
        RecordingRule(INSTANCE_SLO_MISS,
                      f'1 - (sum by (job, instance) (rate({HTTP}_bucket{{le="{slo_latency}"}}[5m]))'
                      f" / sum by (job, instance) (rate({HTTP}_count[5m])))", group),
        RecordingRule(INSTANCE_BEST_RATE,
                      f"max by (job) ({INSTANCE_RATE} and on (job, instance) ({INSTANCE_SLO_MISS} <= {slo_budget:g}))",
                      group),
        RecordingRule(JOB_CAPACITY, f"max_over_time({INSTANCE_BEST_RATE}[{CAPACITY_WINDOW}])", group),
        # The job's capacity beside each live instance, so a panel filtered by instance finds it.
        RecordingRule(INSTANCE_CAPACITY, f"0 * {INSTANCE_RATE} + on (job) group_left {JOB_CAPACITY}", group),
    )


RECORDING_RULES: tuple[RecordingRule, ...] = (
    RecordingRule("job:http_server_requests:rate5m",
                  f"sum by (job) (rate({HTTP}_count[5m]))"),
    RecordingRule("job:http_server_request_errors:rate5m",
                  f'sum by (job) (rate({HTTP}_count{{http_response_status_code=~"5.."}}[5m]))'),
    RecordingRule("job_route:http_server_request_duration_seconds:p95_5m",
                  f"histogram_quantile(0.95, sum by (job, http_route, le) (rate({HTTP}_bucket[5m])))"),
    RecordingRule("job:sizewise_hvac_calculations:rate5m",
                  "sum by (job) (rate(sizewise_hvac_calculations_total[5m]))"),
    RecordingRule("job:sizewise_hvac_calculation_failures:ratio_rate5m",
                  'sum by (job) (rate(sizewise_hvac_calculations_total{sizewise_hvac_calculation_outcome="error"}[5m]))'
                  " / sum by (job) (rate(sizewise_hvac_calculations_total[5m]))"),
    RecordingRule("job:sizewise_cache_lookups:rate5m",
                  'sum by (job) (rate(sizewise_cache_operations_total{sizewise_cache_result=~"hit|miss"}[5m]))'),
    RecordingRule("job:sizewise_cache_hits:ratio_rate5m",
                  'sum by (job) (rate(sizewise_cache_operations_total{sizewise_cache_result="hit"}[5m]))'
                  ' / sum by (job) (rate(sizewise_cache_operations_total{sizewise_cache_result=~"hit|miss"}[5m]))'),
    RecordingRule("job:sizewise_errors:rate5m", "sum by (job) (rate(sizewise_errors_total[5m]))"),
    RecordingRule("job:db_client_connection:utilization",
                  'sum by (job) (db_client_connection_count{db_client_connection_state="used"})'
                  ' / (sum by (job) (db_client_connection_max) > 0)'),
    *(_slo_record(w) for w in SLO_WINDOWS),
    *LIVENESS_RECORDS,
    *CAPACITY_PROJECTION_RECORDS,
    *_capacity_records(SLO_LATENCY_SECONDS, SLO_BUDGET),
)


# --- the Redis server behind the cache (INFO, read every 30 s) ----------------------------------
REDIS_EVICTED = "sizewise_cache_redis_keys_evicted_total"
REDIS_USED = "sizewise_cache_redis_memory_used_bytes"
REDIS_LIMIT = "sizewise_cache_redis_memory_limit_bytes"
REDIS_NEAR_LIMIT = 0.9  # used_memory over this share of maxmemory is "at the limit"
_REDIS_BY = "job, server_address, server_port"


def _burn(long: str, short: str, factor: float) -> str:
    rule = "job:http_server_request_latency_slo_miss:ratio_rate"
    limit = f"{round(factor * SLO_BUDGET, 6):g}"
    return f"({rule}{long} > {limit} and {rule}{short} > {limit})"


DEFAULT_RULES: tuple[AlertRule, ...] = (
    # --- the alerting pipeline itself ---------------------------------------------------------
    # Dead man's switch: always firing; Alertmanager sends it to its own receiver every 5 minutes
    # and the service behind it pages when the messages stop (Prometheus, rules or Alertmanager down).
    AlertRule("watchdog", "vector", "==", 1, 0, AlertSeverity.INFO, "Alerting pipeline heartbeat",
              alert="Watchdog", summary="Alerting pipeline is alive (always firing)", expr="vector(1)",
              details="Always firing: its absence at the dead man's switch means Prometheus, rule "
                      "evaluation or Alertmanager is down.",
              value_format="count", dashboard=DASHBOARDS["services"], group="sizewise.meta"),
    # --- system ----------------------------------------------------------------------------
    AlertRule("high_cpu_usage", "sizewise_cpu_usage_percent", ">", 80.0, 300, AlertSeverity.WARNING,
              "High CPU usage detected", summary="High CPU usage on {{ $labels.instance }}",
              value_format="percent"),
    AlertRule("high_memory_usage", "sizewise_memory_usage_percent", ">", 85.0, 600,
              AlertSeverity.WARNING, "High memory usage detected",
              summary="High memory usage on {{ $labels.instance }}", value_format="percent"),
    AlertRule("critical_memory_usage", "sizewise_memory_usage_percent", ">", 95.0, 300,
              AlertSeverity.CRITICAL, "Memory almost exhausted", alert="HighMemoryUsage",
              summary="Memory almost exhausted on {{ $labels.instance }}", value_format="percent"),
    AlertRule("high_disk_usage", "sizewise_disk_usage_percent", ">", 85.0, 1800,
              AlertSeverity.WARNING, "Disk filling up",
              summary="Data disk {{ $labels.system_filesystem_mountpoint }} filling up on {{ $labels.instance }}",
              value_format="percent"),
    AlertRule("critical_disk_usage", "sizewise_disk_usage_percent", ">", 95.0, 600,
              AlertSeverity.CRITICAL, "Disk almost full", alert="HighDiskUsage",
              summary="Data disk {{ $labels.system_filesystem_mountpoint }} almost full on {{ $labels.instance }}",
              value_format="percent"),
    # --- application -----------------------------------------------------------------------
    # Prometheus: the service's share of 5xx from the request counters summed over its instances
    # (a per-process percent cannot be aggregated); in-process: the spec's gauge of that process.
    AlertRule("high_error_rate", "sizewise_error_rate_percent", ">", 5.0, 60, AlertSeverity.CRITICAL,
              "High error rate detected", summary="High error rate on {{ $labels.job }}",
              expr="100 * job:http_server_request_errors:rate5m / on (job) job:http_server_requests:rate5m > 5",
              in_process=True,
              details="More than 5% of HTTP requests to {{ $labels.job }} (all instances) answered "
                      "5xx over the last 5 minutes.",
              value_format="percent", dashboard=DASHBOARDS["performance"], group="sizewise.application"),
    AlertRule("latency_slo_fast_burn", HTTP, ">", 14.4 * SLO_BUDGET, 120, AlertSeverity.CRITICAL,
              "Latency SLO error budget burning fast", alert="LatencySLOBudgetBurn",
              summary="{{ $labels.job }} is burning its latency error budget fast",
              expr=f"{_burn('1h', '5m', 14.4)} or {_burn('6h', '30m', 6)}",
              details=f"Requests slower than {SLO_LATENCY_SECONDS}s exceed 14.4x (1h and 5m) or 6x "
                      f"(6h and 30m) the {SLO_BUDGET:.0%} budget of the {SLO_OBJECTIVE:.0%} SLO.",
              value_format="ratio", dashboard=DASHBOARDS["performance"], group="sizewise.slo"),
    AlertRule("latency_slo_slow_burn", HTTP, ">", 3 * SLO_BUDGET, 900, AlertSeverity.WARNING,
              "Latency SLO error budget burning", alert="LatencySLOBudgetBurn",
              summary="{{ $labels.job }} is burning its latency error budget",
              expr=f"{_burn('1d', '2h', 3)} or {_burn('3d', '6h', 1)}",
              details=f"Requests slower than {SLO_LATENCY_SECONDS}s exceed 3x (1d and 2h) or 1x "
                      f"(3d and 6h) the {SLO_BUDGET:.0%} budget of the {SLO_OBJECTIVE:.0%} SLO.",
              value_format="ratio", dashboard=DASHBOARDS["performance"], group="sizewise.slo"),
    AlertRule("scrape_target_down", "up", "==", 0, 120, AlertSeverity.CRITICAL,
              "Scrape target down", summary="{{ $labels.job }} target {{ $labels.instance }} is down",
              details="Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}).",
              value_format="count", dashboard=DASHBOARDS["services"], group="sizewise.application"),
    AlertRule("instance_down", "target_info", "==", 0, 60, AlertSeverity.CRITICAL,
              "Service instance stopped reporting",
              summary="{{ $labels.job }} lost instance {{ $labels.instance }}",
              expr=f"(present_over_time({INSTANCE_UP}[{LIVENESS_WINDOW}]) unless {INSTANCE_UP})"
                   f" and on (job) {_SHRUNK} {_COLLECTOR_DOWN}",
              details="Instance {{ $labels.instance }} of {{ $labels.job }} pushed no telemetry since "
                      "its series expired, and no new instance took its place.",
              value_format="count", dashboard=DASHBOARDS["services"], group="sizewise.liveness"),
    AlertRule("service_absent", "target_info", "==", 0, 60, AlertSeverity.CRITICAL,
              "Service absent", summary="{{ $labels.job }} has no live instance",
              expr=f"(max_over_time({INSTANCES}[{ABSENCE_WINDOW}]) unless on (job) {INSTANCES}"
                   f" or {_ABSENT}) {_COLLECTOR_DOWN}",
              details="No instance of {{ $labels.job }} pushes telemetry.",
              value_format="count", dashboard=DASHBOARDS["services"], group="sizewise.liveness"),
    AlertRule("telemetry_export_failures", "sizewise_telemetry_export_failures_total", ">", 3, 300,
              AlertSeverity.WARNING, "Telemetry export failing",
              summary="{{ $labels.job }} cannot export {{ $labels.sizewise_telemetry_signal }} over OTLP",
              function="increase", window_seconds=600, by=("job", "sizewise_telemetry_signal"), value_format="count",
              dashboard=DASHBOARDS["services"], group="sizewise.application"),
    # --- capacity planning: a 6 h linear trend that crosses 100 % within the horizon, on a
    # resource already past a floor (a young, small disk growing fast is not yet news) ----------
    AlertRule("disk_fills_within_24h", "sizewise_disk_usage_percent", ">", 60, 3600, AlertSeverity.WARNING,
              "Disk predicted to fill within 24 hours",
              alert="DiskFillsWithin24h",
              summary="Disk {{ $labels.system_filesystem_mountpoint }} on {{ $labels.instance }} fills within 24 h"
                      " at its 6 h trend",
              expr=f"sizewise_disk_usage_percent > 60"
                   f" and {predict('sizewise_disk_usage_percent', 24 * 3600)} >= 100",
              details=f"The disk is over 60% used and a linear fit over the last {FIT_WINDOW} "
                      "reaches 100% within 24 hours (for 1h).",
              value_format="percent", group="sizewise.capacity"),
    AlertRule("disk_fills_within_4h", "sizewise_disk_usage_percent", ">", 80, 1800, AlertSeverity.CRITICAL,
              "Disk predicted to fill within 4 hours",
              alert="DiskFillsWithin4h",
              summary="Disk {{ $labels.system_filesystem_mountpoint }} on {{ $labels.instance }} fills within 4 h"
                      " at its 6 h trend",
              expr=f"sizewise_disk_usage_percent > 80"
                   f" and {predict('sizewise_disk_usage_percent', 4 * 3600)} >= 100",
              details=f"The disk is over 80% used and a linear fit over the last {FIT_WINDOW} "
                      "reaches 100% within 4 hours (for 30m).",
              value_format="percent", group="sizewise.capacity"),
    AlertRule("memory_limit_within_24h", "sizewise_memory_usage_percent", ">", 70, 3600,
              AlertSeverity.WARNING, "Memory predicted to reach its limit within 24 hours",
              alert="MemoryLimitWithin24h",
              summary="Memory on {{ $labels.instance }} reaches its limit within 24 h at its 6 h trend",
              expr=f"sizewise_memory_usage_percent > 70"
                   f" and {predict('sizewise_memory_usage_percent', 24 * 3600)} >= 100",
              details=f"Memory ({{{{ $labels.sizewise_usage_source }}}}) is over 70% used and a linear fit over "
                      f"the last {FIT_WINDOW} reaches 100% within 24 hours (for 1h): a leak, or growth to plan for.",
              value_format="percent", group="sizewise.capacity"),
    # --- traffic distribution ----------------------------------------------------------------
    # Share of the job's requests x live instances: 1 is a fair share; over 1.5 for 10 minutes,
    # with at least two instances and enough traffic for the split to mean something.
    AlertRule("traffic_imbalance", HTTP, ">", IMBALANCE_FACTOR, 600, AlertSeverity.WARNING,
              "One instance takes more than its share of requests", alert="TrafficImbalance",
              summary="{{ $labels.instance }} of {{ $labels.job }} takes an uneven share of requests",
              expr=f"{INSTANCE_RATE} / on (job) group_left {_JOB_TOTAL}"
                   f" * on (job) group_left {INSTANCES} > {IMBALANCE_FACTOR:g}"
                   f" and on (job) {INSTANCES} >= 2 and on (job) {_JOB_TOTAL} > {IMBALANCE_MIN_RPS:g}",
              details="Instance {{ $labels.instance }} served {{ $value | printf \"%.2f\" }} times its fair "
                      f"share (1 / live instances) of the job's requests over 5m, for 10m, with at least "
                      f"2 instances and over {IMBALANCE_MIN_RPS:g} request/s: the load balancer is uneven "
                      "(sticky sessions, keep-alive pinning, a pod out of readiness).",
              dashboard=DASHBOARDS["performance"], group="sizewise.traffic"),
    # --- container (cgroup signals; only a container with limits has them) -----------------
    # Every worker of a container reports the same cgroup, so these stay per instance: summing
    # would count one container once per worker.
    AlertRule("container_cpu_throttling", "sizewise_container_cpu_throttled_periods_total", ">", 0.25,
              900, AlertSeverity.WARNING, "Container CPU throttled",
              summary="{{ $labels.job }} container of {{ $labels.instance }} is CPU-throttled",
              expr="rate(sizewise_container_cpu_throttled_periods_total[5m])"
                   " / rate(sizewise_container_cpu_periods_total[5m]) > 0.25",
              details="Over 25% of CFS periods were throttled over 5m, for 15m: the CPU quota is too small.",
              value_format="ratio", group="sizewise.container"),
    AlertRule("container_oom_killed", "sizewise_container_memory_oom_kills_total", ">", 0, 0,
              AlertSeverity.WARNING, "Container process OOM-killed",
              summary="A process in the container of {{ $labels.job }} {{ $labels.instance }} was OOM-killed",
              expr="increase(sizewise_container_memory_oom_kills_total[10m]) > 0",
              details="The kernel OOM killer ended a process in this container over the last 10m.",
              value_format="count", group="sizewise.container"),
    AlertRule("container_memory_near_limit", "container_memory_working_set_bytes", ">", 0.9,
              300, AlertSeverity.WARNING, "Container memory near its limit",
              summary="{{ $labels.job }} container of {{ $labels.instance }} is near its memory limit",
              expr="container_memory_working_set_bytes / k8s_container_memory_limit_current_bytes > 0.9",
              details="The working set exceeds 90% of the memory limit for 5m: the OOM killer is next.",
              value_format="ratio", group="sizewise.container"),
    # --- dependencies ----------------------------------------------------------------------
    AlertRule("database_down", "sizewise_health_status", "==", 1, 60, AlertSeverity.CRITICAL,
              "Database unreachable", summary="Database health check critical on {{ $labels.job }}",
              matchers=(("sizewise_health_check", "=", "database"), HEALTH_CRITICAL), value_format="count",
              dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    AlertRule("database_pool_saturation", "db_client_connection_count", ">", 0.9, 300,
              AlertSeverity.WARNING, "Database connection pool saturated",
              summary="{{ $labels.job }} uses over 90% of its database pool",
              expr="job:db_client_connection:utilization > 0.9",
              details="Checked-out connections exceed 90% of the pool maximum (size + overflow).",
              value_format="ratio", dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    AlertRule("redis_down", "sizewise_health_status", "==", 1, 60, AlertSeverity.WARNING,
              "Redis unreachable, cache bypassed",
              summary="Redis health check critical on {{ $labels.job }}",
              matchers=(("sizewise_health_check", "=", "redis"), HEALTH_CRITICAL), value_format="count",
              dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    AlertRule("cache_hit_ratio_collapse", "sizewise_cache_operations_total", "<", 0.5, 600,
              AlertSeverity.WARNING, "Cache hit ratio collapsed",
              summary="Cache hit ratio on {{ $labels.job }} below 50%",
              expr="job:sizewise_cache_hits:ratio_rate5m < 0.5"
                   " and on (job) job:sizewise_cache_lookups:rate5m > 0.1",
              details="Fewer than half of cache lookups hit over 5m while lookups keep arriving.",
              value_format="ratio", dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    # Every instance reports the same Redis server: max per server, never a sum over instances.
    AlertRule("redis_evictions_near_maxmemory", REDIS_EVICTED, ">", 0, 600, AlertSeverity.WARNING,
              "Redis evicting keys at maxmemory", alert="RedisEvictionsNearMaxmemory",
              summary="Redis {{ $labels.server_address }}:{{ $labels.server_port }} evicts keys near its "
                      "maxmemory ({{ $labels.job }})",
              expr=f"max by ({_REDIS_BY}) (rate({REDIS_EVICTED}[5m])) > 0"
                   f" and on ({_REDIS_BY}) max by ({_REDIS_BY})"
                   f" ({REDIS_USED} / ({REDIS_LIMIT} > 0)) > {REDIS_NEAR_LIMIT:g}",
              details=f"The server evicted {{{{ $value | printf \"%.2f\" }}}} keys/s over 5m while using over "
                      f"{REDIS_NEAR_LIMIT:.0%} of maxmemory, for 10m: the cached working set does not fit, "
                      "so hits fall and the work the cache saved comes back.",
              dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    AlertRule("critical_health_check", "sizewise_health_status", "==", 1, 120,
              AlertSeverity.CRITICAL, "Health check critical",
              summary="Health check {{ $labels.sizewise_health_check }} critical on {{ $labels.job }}",
              matchers=(("sizewise_health_check", "!~", "database|redis"), HEALTH_CRITICAL),
              value_format="count",
              dashboard=DASHBOARDS["services"], group="sizewise.dependencies"),
    # --- HVAC and errors -------------------------------------------------------------------
    AlertRule("hvac_calculation_failure_rate", "sizewise_hvac_calculations_total", ">", 0.05, 300,
              AlertSeverity.WARNING, "HVAC calculations failing",
              summary="Over 5% of HVAC calculations fail on {{ $labels.job }}",
              expr="job:sizewise_hvac_calculation_failures:ratio_rate5m > 0.05",
              details="Calculations ending with sizewise.hvac.calculation.outcome=error exceed 5% over 5m.",
              value_format="ratio", dashboard=DASHBOARDS["hvac"], group="sizewise.hvac"),
    AlertRule("error_spike", "sizewise_errors_total", ">", 50, 120, AlertSeverity.WARNING,
              "Error spike", summary="Error spike on {{ $labels.job }}",
              function="increase", window_seconds=300, value_format="count",
              dashboard=DASHBOARDS["errors"], group="sizewise.errors"),
    # A counter series born at 1 (the first group of a severity) has no increase yet: `unless
    # offset` catches it. In-process, a series born after the first look counts from zero.
    AlertRule("new_error_group", "sizewise_error_groups_new_total", ">", 0, 60, AlertSeverity.WARNING,
              "New error group", summary="New error group on {{ $labels.job }}",
              function="increase", window_seconds=600, value_format="count", in_process=True,
              expr="sum by (job) (increase(sizewise_error_groups_new_total[10m]) > 0"
                   " or (sizewise_error_groups_new_total unless sizewise_error_groups_new_total offset 10m))"
                   " > 0",
              details="Errors with a new fingerprint appeared in the last 10m on {{ $labels.job }}.",
              dashboard=DASHBOARDS["errors"], group="sizewise.errors"),
)


def default_rules() -> tuple[AlertRule, ...]:
    return DEFAULT_RULES
