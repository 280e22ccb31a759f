"""promtool unit-test cases for every alert in the default catalog.

Each case feeds series sampled every minute and checks, per alertname, the exact firing alerts
(labels and expanded annotations) at chosen times: *before* the rule's ``for`` has elapsed
(nothing fires yet), *after* it (the alert fires with the expected value), and *after the
condition cleared* (resolved). Series are linear where rates are involved, so ``rate``/``increase``
extrapolation gives the same numbers under Prometheus 2.x (closed windows) and 3.x (left-open).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from sizewise_otel.alerts.rules import DEFAULT_RULES, AlertRule

JOB = {"job": "sizewise", "instance": "app:8000"}


@dataclass(frozen=True)
class Expect:
    rule: str  # AlertRule.name
    value: float
    labels: Mapping[str, str] = field(default_factory=lambda: {"job": "sizewise"})


@dataclass(frozen=True)
class Check:
    minute: int
    alertname: str
    firing: tuple[Expect, ...] = ()


@dataclass(frozen=True)
class PromTest:
    name: str
    series: tuple[tuple[str, str], ...]
    checks: tuple[Check, ...]


def _series(metric: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def threshold_test(rule: AlertRule, high: float, low: float, **extra: str) -> PromTest:
    """A current-value rule: the condition holds from t=0 for ``for + 2`` minutes, then clears."""
    minutes = max(1, math.ceil(rule.duration_seconds / 60))
    labels = {**JOB, **{k: v for k, op, v in rule.matchers if op == "="}, **extra}
    values = f"{high:g}x{minutes + 1} {low:g}x10"
    return PromTest(
        rule.name,
        ((_series(rule.metric_name, labels), values),),
        (Check(minutes - 1, rule.alertname),
         Check(minutes + 1, rule.alertname, (Expect(rule.name, high, labels),)),
         Check(minutes + 3, rule.alertname)),
    )


def _by_name() -> dict[str, AlertRule]:
    return {r.name: r for r in DEFAULT_RULES}


def default_tests() -> tuple[PromTest, ...]:
    r = _by_name()
    http = "http_server_request_duration_seconds"
    route = {**JOB, "http_request_method": "POST", "http_route": "/api/hvac/calculate",
             "http_response_status_code": "200", "url_scheme": "http"}
    calc = {**JOB, "calculation_type": "load"}
    cache = {**JOB, "cache_backend": "redis", "cache_operation": "get"}
    job = {"job": "sizewise"}
    return (
        threshold_test(r["high_cpu_usage"], 90, 20, source="host"),
        threshold_test(r["high_memory_usage"], 90, 50, source="host"),
        threshold_test(r["critical_memory_usage"], 97, 50, source="host"),
        threshold_test(r["high_disk_usage"], 90, 50, mountpoint="data"),
        threshold_test(r["critical_disk_usage"], 97, 50, mountpoint="data"),
        threshold_test(r["high_error_rate"], 12.5, 0),
        threshold_test(r["scrape_target_down"], 0, 1),
        threshold_test(r["database_down"], 2, 0),
        threshold_test(r["redis_down"], 2, 0),
        threshold_test(r["critical_health_check"], 2, 0, check="system"),
        # 100 requests a minute; 20 % slower than 0.5 s during the first hour, none afterwards.
        PromTest("latency_slo_burn", (
            (_series(f"{http}_count", route), "0+100x480"),
            (_series(f"{http}_bucket", {**route, "le": "0.5"}), "0+80x60 4900+100x420"),
        ), (
            Check(2, "LatencySLOBudgetBurn"),  # fast burn pending (for 2m)
            Check(5, "LatencySLOBudgetBurn", (Expect("latency_slo_fast_burn", 0.2, job),)),
            Check(30, "LatencySLOBudgetBurn", (Expect("latency_slo_fast_burn", 0.2, job),
                                               Expect("latency_slo_slow_burn", 0.2, job))),
            # (No check while the ratio decays: promtool may evaluate the alert group before or
            # after the recording group of the same step, so the value would be flaky.)
            Check(420, "LatencySLOBudgetBurn"),
        )),
        PromTest("database_pool_saturation", (
            (_series("sizewise_db_pool_connections", {**JOB, "state": "used"}), "19x7 5x10"),
            (_series("sizewise_db_pool_connections", {**JOB, "state": "max"}), "20x20"),
        ), (
            Check(4, "DatabasePoolSaturation"),
            Check(6, "DatabasePoolSaturation", (Expect("database_pool_saturation", 0.95, job),)),
            Check(10, "DatabasePoolSaturation"),
        )),
        # 25 % hits for 12 minutes, then only hits.
        PromTest("cache_hit_ratio_collapse", (
            (_series("sizewise_cache_operations_total", {**cache, "cache_result": "hit"}),
             "0+60x12 1020+300x20"),
            (_series("sizewise_cache_operations_total", {**cache, "cache_result": "miss"}),
             "0+180x12 2160x20"),
        ), (
            Check(10, "CacheHitRatioCollapse"),
            Check(12, "CacheHitRatioCollapse", (Expect("cache_hit_ratio_collapse", 0.25, job),)),
            Check(20, "CacheHitRatioCollapse"),
        )),
        # 10 % of calculations fail for 12 minutes, then none do.
        PromTest("hvac_calculation_failure_rate", (
            (_series("sizewise_hvac_calculations_total", {**calc, "outcome": "error"}),
             "0+10x12 120x20"),
            (_series("sizewise_hvac_calculations_total", {**calc, "outcome": "success"}),
             "0+90x12 1180+100x20"),
        ), (
            Check(5, "HvacCalculationFailureRate"),
            Check(8, "HvacCalculationFailureRate", (Expect("hvac_calculation_failure_rate", 0.1, job),)),
            Check(20, "HvacCalculationFailureRate"),
        )),
        # 20 errors a minute from minute 11 to 31.
        PromTest("error_spike", (
            (_series("sizewise_errors_total", {**JOB, "error_type": "ValueError", "severity": "high"}),
             "0x10 20+20x20 420x20"),
        ), (
            Check(14, "ErrorSpike"),
            Check(16, "ErrorSpike", (Expect("error_spike", 100, job),)),
            Check(38, "ErrorSpike"),
        )),
        # One new group at minute 11.
        PromTest("new_error_group", (
            (_series("sizewise_error_groups_new_total", {**JOB, "severity": "high"}), "0x10 1x20"),
        ), (
            Check(11, "NewErrorGroup"),
            Check(15, "NewErrorGroup", (Expect("new_error_group", 1, job),)),
            Check(23, "NewErrorGroup"),
        )),
        # The first group of a severity: a counter series born at 1, with no increase to see.
        PromTest("new_error_group_first_of_severity", (
            (_series("sizewise_error_groups_new_total", {**JOB, "severity": "critical"}), "_x11 1x20"),
        ), (
            Check(11, "NewErrorGroup"),
            Check(15, "NewErrorGroup", (Expect("new_error_group", 1, job),)),
            Check(23, "NewErrorGroup"),
        )),
        # One failed metrics export a minute from minute 11 to 41.
        PromTest("telemetry_export_failures", (
            (_series("sizewise_telemetry_export_failures_total", {**JOB, "signal": "metrics"}),
             "0x10 1+1x30 31x30"),
        ), (
            Check(18, "TelemetryExportFailures"),
            Check(25, "TelemetryExportFailures",
                  (Expect("telemetry_export_failures", 10, {"job": "sizewise", "signal": "metrics"}),)),
            Check(55, "TelemetryExportFailures"),
        )),
    )
