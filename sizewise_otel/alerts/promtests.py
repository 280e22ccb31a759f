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

from sizewise_otel.alerts.rules import (
    COLLECTOR_JOB,
    DEFAULT_RULES,
    EXPECTED_JOBS,
    REDIS_EVICTED,
    REDIS_LIMIT,
    REDIS_USED,
    AlertRule,
)

JOB = {"job": "sizewise", "instance": "app:8000"}
PUSHED = EXPECTED_JOBS[0]  # the job the collector's exporter gives the app's instances


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


def _instance(name: str, values: str, job: str = PUSHED) -> tuple[str, str]:
    """One app instance on the push path: its target_info series (1 while it exports)."""
    return _series("target_info", {"job": job, "instance": name, "telemetry_sdk_language": "python"}), values


def _lost(*instances: str) -> tuple[Expect, ...]:
    return tuple(Expect("instance_down", 1, {"job": PUSHED, "instance": i}) for i in instances)


def liveness_tests() -> tuple[PromTest, ...]:
    """Instances die at minute 20 (their series go stale, as when the collector expires them)."""
    absent = Expect("service_absent", 2, {"job": PUSHED})
    return (
        # Two instances; `a` dies, a replacement `c` starts at minute 26.
        PromTest("instance_down", (
            _instance("a", "1x20 stale"), _instance("b", "1x40"), _instance("c", "_x25 1x15"),
        ), (
            Check(20, "InstanceDown"),
            Check(24, "InstanceDown", _lost("a")),
            Check(28, "InstanceDown"),
        )),
        # Both die (each is lost and the service is absent); two new ones start at minute 30.
        PromTest("service_absent", (
            _instance("a", "1x20 stale"), _instance("b", "1x20 stale"),
            _instance("c", "_x29 1x10"), _instance("d", "_x29 1x10"),
        ), (
            Check(20, "ServiceAbsent"),
            Check(24, "ServiceAbsent", (absent,)),
            Check(33, "ServiceAbsent"),
            Check(20, "InstanceDown"),
            Check(24, "InstanceDown", _lost("a", "b")),
            Check(33, "InstanceDown"),
        )),
        # The expected job never reported (another job did): absent_over_time catches it.
        PromTest("service_never_seen", (
            _instance("x", "1x20", job="sizewise/other"), _instance("a", "_x9 1x10"),
        ), (
            Check(0, "ServiceAbsent"),
            Check(3, "ServiceAbsent", (Expect("service_absent", 1, {"job": PUSHED}),)),
            Check(12, "ServiceAbsent"),
        )),
        # A worker recycled: `c` starts as `a` dies, both exported at minute 20 (a count of 3 for
        # less than STABLE_WINDOW). No alert.
        PromTest("instance_replaced_is_silent", (
            _instance("a", "1x20 stale"), _instance("b", "1x40"), _instance("c", "_x20 1x19"),
        ), (
            Check(20, "InstanceDown"), Check(24, "InstanceDown"), Check(35, "InstanceDown"),
        )),
        # The collector's exporter cannot be scraped: its instances vanish, but that is
        # ScrapeTargetDown's alert, not a dead service.
        PromTest("collector_down_is_silent", (
            (_series("up", {"job": COLLECTOR_JOB, "instance": "otel-collector:8889"}), "1x10 0x10 1x20"),
            _instance("a", "1x10 stale _x9 1x20"), _instance("b", "1x10 stale _x9 1x20"),
        ), (
            Check(14, "InstanceDown"), Check(14, "ServiceAbsent"),
            Check(25, "InstanceDown"), Check(25, "ServiceAbsent"),
        )),
    )


def container_tests() -> tuple[PromTest, ...]:
    periods = "sizewise_container_cpu_periods_total"
    return (
        # Half of the CFS periods throttled for 20 minutes (600 periods a minute).
        PromTest("container_cpu_throttling", (
            (_series(periods, JOB), "0+600x40"),
            (_series("sizewise_container_cpu_throttled_periods_total", JOB), "0+300x20 6000x20"),
        ), (
            Check(14, "ContainerCpuThrottling"),
            Check(17, "ContainerCpuThrottling", (Expect("container_cpu_throttling", 0.5, JOB),)),
            Check(28, "ContainerCpuThrottling"),
        )),
        # One OOM kill at minute 11.
        PromTest("container_oom_killed", (
            (_series("sizewise_container_memory_oom_kills_total", JOB), "0x10 1x20"),
        ), (
            Check(10, "ContainerOomKilled"),
            Check(12, "ContainerOomKilled", (Expect("container_oom_killed", 1, JOB),)),
            Check(23, "ContainerOomKilled"),
        )),
        # Working set at 95 % of the limit for 6 minutes.
        PromTest("container_memory_near_limit", (
            (_series("container_memory_working_set_bytes", JOB), "950x6 500x10"),
            (_series("k8s_container_memory_limit_current_bytes", JOB), "1000x16"),
        ), (
            Check(4, "ContainerMemoryNearLimit"),
            Check(6, "ContainerMemoryNearLimit", (Expect("container_memory_near_limit", 0.95, JOB),)),
            Check(8, "ContainerMemoryNearLimit"),
        )),
    )


def capacity_tests() -> tuple[PromTest, ...]:
    """Linear growth (exact for predict_linear), then a cleanup that drops usage under the floor."""
    disk = {**JOB, "system_filesystem_mountpoint": "/data"}
    memory = {**JOB, "sizewise_usage_source": "host"}
    disk_series = "sizewise_disk_usage_percent"
    return (
        # +0.05 %/min (72 %/day) from 50 %: past the 60 % floor from minute 201, firing 1h later;
        # freed at minute 301.
        PromTest("disk_fills_within_24h", ((_series(disk_series, disk), "50+0.05x300 40x60"),), (
            Check(250, "DiskFillsWithin24h"),
            Check(280, "DiskFillsWithin24h", (Expect("disk_fills_within_24h", 64, disk),)),
            Check(310, "DiskFillsWithin24h"),
        )),
        # +0.2 %/min (48 % per 4 h) from 70 %: past 80 % from minute 51, firing 30m later.
        PromTest("disk_fills_within_4h", ((_series(disk_series, disk), "70+0.2x100 50x30"),), (
            Check(75, "DiskFillsWithin4h"),
            Check(90, "DiskFillsWithin4h", (Expect("disk_fills_within_4h", 88, disk),)),
            Check(105, "DiskFillsWithin4h"),
        )),
        # Full but flat (HighDiskUsage's business), or filling slowly (+0.01 %/min: 14 %/day from
        # 80 %): no forecast alert either way.
        PromTest("disk_full_but_flat_or_slow_is_silent", (
            (_series(disk_series, disk), "96x400"),
            (_series(disk_series, {**disk, "system_filesystem_mountpoint": "/var/log/sizewise"}), "80+0.01x400"),
        ), (
            Check(90, "DiskFillsWithin4h"), Check(390, "DiskFillsWithin4h"),
            Check(90, "DiskFillsWithin24h"), Check(390, "DiskFillsWithin24h"),
        )),
        # +0.05 %/min from 65 %: past 70 % from minute 101, firing 1h later; a restart frees it.
        PromTest("memory_limit_within_24h", (
            (_series("sizewise_memory_usage_percent", memory), "65+0.05x200 50x30"),
        ), (
            Check(150, "MemoryLimitWithin24h"),
            Check(180, "MemoryLimitWithin24h", (Expect("memory_limit_within_24h", 74, memory),)),
            Check(210, "MemoryLimitWithin24h"),
        )),
    )


def _requests(instance: str, per_minute: str) -> tuple[str, str]:
    labels = {"job": PUSHED, "instance": instance, "http_request_method": "GET",
              "http_route": "/api/hvac/calculate", "http_response_status_code": "200", "url_scheme": "http"}
    return _series("http_server_request_duration_seconds_count", labels), per_minute


def traffic_tests() -> tuple[PromTest, ...]:
    """Two live instances (target_info) unless said; request counters grow linearly (exact rates)."""
    live = (_instance("a", "1x60"), _instance("b", "1x60"))
    hot = Expect("traffic_imbalance", 1.6, {"job": PUSHED, "instance": "a"})
    return (
        # a serves 4 req/s, b 1: a's share 80 % = 1.6 x its fair 50 %. Balanced from minute 20.
        PromTest("traffic_imbalance", (
            *live, _requests("a", "0+240x20 4800+150x30"), _requests("b", "0+60x20 1200+150x30"),
        ), (
            Check(9, "TrafficImbalance"),
            Check(17, "TrafficImbalance", (hot,)),
            Check(30, "TrafficImbalance"),
        )),
        # An even split (2.5 req/s each): silent.
        PromTest("traffic_balanced_is_silent", (
            *live, _requests("a", "0+150x40"), _requests("b", "0+150x40"),
        ), (Check(15, "TrafficImbalance"), Check(35, "TrafficImbalance"))),
        # One instance takes everything because it is the only one: silent.
        PromTest("traffic_single_instance_is_silent", (
            _instance("a", "1x60"), _requests("a", "0+300x40"),
        ), (Check(15, "TrafficImbalance"), Check(35, "TrafficImbalance"))),
        # The same 80/20 split at 0.5 req/s in all: too little traffic to judge a balancer.
        PromTest("traffic_low_rate_is_silent", (
            *live, _requests("a", "0+24x40"), _requests("b", "0+6x40"),
        ), (Check(15, "TrafficImbalance"), Check(35, "TrafficImbalance"))),
        # Three live instances, c gets nothing and a and b split evenly: each has 1.5 x its fair
        # share, not more. Silent (the alert is for one hot instance; c idle shows on the panels).
        PromTest("traffic_one_idle_of_three_is_silent", (
            *live, _instance("c", "1x60"), _requests("a", "0+150x40"), _requests("b", "0+150x40"),
        ), (Check(15, "TrafficImbalance"), Check(35, "TrafficImbalance"))),
    )


def redis_tests() -> tuple[PromTest, ...]:
    """Two app instances report the same Redis server (INFO), as every worker does."""
    server = {"server_address": "redis", "server_port": "6379"}
    evicted, used, limit = REDIS_EVICTED, REDIS_USED, REDIS_LIMIT

    def both(metric: str, values: str) -> tuple[tuple[str, str], ...]:
        return tuple((_series(metric, {**JOB, **server, "instance": i}), values) for i in ("a:8000", "b:8000"))

    firing = Expect("redis_evictions_near_maxmemory", 2, {"job": "sizewise", **server})
    return (
        # At 95 % of maxmemory throughout; 120 keys evicted a minute (2/s) from minute 11 to 30.
        PromTest("redis_evictions_near_maxmemory", (
            *both(evicted, "0x10 120+120x19 2400x20"),
            *both(used, "950x50"), *both(limit, "1000x50"),
        ), (
            Check(18, "RedisEvictionsNearMaxmemory"),
            Check(23, "RedisEvictionsNearMaxmemory", (firing,)),
            Check(38, "RedisEvictionsNearMaxmemory"),
        )),
        # The same evictions with memory at half of maxmemory (maxmemory lowered, then raised
        # back), and on a server without maxmemory (no limit series, INFO maxmemory 0): silent.
        PromTest("redis_evictions_far_from_maxmemory_are_silent", (
            *both(evicted, "0x10 120+120x19 2400x20"),
            *both(used, "500x50"), *both(limit, "1000x50"),
            (_series(evicted, {**JOB, "server_address": "other", "server_port": "6379"}), "0+120x40"),
            (_series(used, {**JOB, "server_address": "other", "server_port": "6379"}), "950x40"),
        ), (Check(23, "RedisEvictionsNearMaxmemory"), Check(35, "RedisEvictionsNearMaxmemory"))),
    )


def _by_name() -> dict[str, AlertRule]:
    return {r.name: r for r in DEFAULT_RULES}


def default_tests() -> tuple[PromTest, ...]:
    r = _by_name()
    http = "http_server_request_duration_seconds"
    route = {**JOB, "http_request_method": "POST", "http_route": "/api/hvac/calculate",
             "http_response_status_code": "200", "url_scheme": "http"}
    calc = {**JOB, "sizewise_hvac_calculation_type": "heat_load"}
    cache = {**JOB, "sizewise_cache_backend": "redis", "sizewise_cache_operation": "get"}
    job = {"job": "sizewise"}
    return (
        # Always firing, from the first evaluation on.
        PromTest("watchdog", (), (
            Check(0, "Watchdog", (Expect("watchdog", 1, {}),)),
            Check(60, "Watchdog", (Expect("watchdog", 1, {}),)),
        )),
        *liveness_tests(),
        *container_tests(),
        *capacity_tests(),
        *traffic_tests(),
        *redis_tests(),
        threshold_test(r["high_cpu_usage"], 90, 20, sizewise_usage_source="host"),
        threshold_test(r["high_memory_usage"], 90, 50, sizewise_usage_source="host"),
        threshold_test(r["critical_memory_usage"], 97, 50, sizewise_usage_source="host"),
        threshold_test(r["high_disk_usage"], 90, 50, system_filesystem_mountpoint="/data"),
        threshold_test(r["critical_disk_usage"], 97, 50, system_filesystem_mountpoint="/data"),
        # Two instances: `a` answers only 500s (20 a minute), `b` only 200s (180 a minute). The
        # service's share is 10 %, not a's 100 % nor the 50 % mean of the two processes' percents.
        PromTest("high_error_rate", (
            (_series(f"{http}_count", {**route, "instance": "a", "http_response_status_code": "500"}),
             "0+20x10 200x20"),
            (_series(f"{http}_count", {**route, "instance": "b"}), "0+180x30"),
        ), (
            Check(0, "HighErrorRate"),
            Check(4, "HighErrorRate", (Expect("high_error_rate", 10, job),)),
            Check(17, "HighErrorRate"),
        )),
        threshold_test(r["scrape_target_down"], 0, 1),
        threshold_test(r["database_down"], 1, 0),
        threshold_test(r["redis_down"], 1, 0),
        threshold_test(r["critical_health_check"], 1, 0, sizewise_health_check="system"),
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
            (_series("db_client_connection_count", {**JOB, "db_client_connection_state": "used",
                                                    "db_client_connection_pool_name": "db:5432/app"}), "19x7 5x10"),
            (_series("db_client_connection_max", {**JOB, "db_client_connection_pool_name": "db:5432/app"}), "20x20"),
        ), (
            Check(4, "DatabasePoolSaturation"),
            Check(6, "DatabasePoolSaturation", (Expect("database_pool_saturation", 0.95, job),)),
            Check(10, "DatabasePoolSaturation"),
        )),
        # 25 % hits for 12 minutes, then only hits.
        PromTest("cache_hit_ratio_collapse", (
            (_series("sizewise_cache_operations_total", {**cache, "sizewise_cache_result": "hit"}),
             "0+60x12 1020+300x20"),
            (_series("sizewise_cache_operations_total", {**cache, "sizewise_cache_result": "miss"}),
             "0+180x12 2160x20"),
        ), (
            Check(10, "CacheHitRatioCollapse"),
            Check(12, "CacheHitRatioCollapse", (Expect("cache_hit_ratio_collapse", 0.25, job),)),
            Check(20, "CacheHitRatioCollapse"),
        )),
        # 10 % of calculations fail for 12 minutes, then none do.
        PromTest("hvac_calculation_failure_rate", (
            (_series("sizewise_hvac_calculations_total", {**calc, "sizewise_hvac_calculation_outcome": "error"}),
             "0+10x12 120x20"),
            (_series("sizewise_hvac_calculations_total", {**calc, "sizewise_hvac_calculation_outcome": "success"}),
             "0+90x12 1180+100x20"),
        ), (
            Check(5, "HvacCalculationFailureRate"),
            Check(8, "HvacCalculationFailureRate", (Expect("hvac_calculation_failure_rate", 0.1, job),)),
            Check(20, "HvacCalculationFailureRate"),
        )),
        # 20 errors a minute from minute 11 to 31.
        PromTest("error_spike", (
            (_series("sizewise_errors_total", {**JOB, "error_type": "ValueError", "sizewise_error_severity": "high"}),
             "0x10 20+20x20 420x20"),
        ), (
            Check(14, "ErrorSpike"),
            Check(16, "ErrorSpike", (Expect("error_spike", 100, job),)),
            Check(38, "ErrorSpike"),
        )),
        # One new group at minute 11.
        PromTest("new_error_group", (
            (_series("sizewise_error_groups_new_total", {**JOB, "sizewise_error_severity": "high"}), "0x10 1x20"),
        ), (
            Check(11, "NewErrorGroup"),
            Check(15, "NewErrorGroup", (Expect("new_error_group", 1, job),)),
            Check(23, "NewErrorGroup"),
        )),
        # The first group of a severity: a counter series born at 1, with no increase to see.
        PromTest("new_error_group_first_of_severity", (
            (_series("sizewise_error_groups_new_total", {**JOB, "sizewise_error_severity": "critical"}), "_x11 1x20"),
        ), (
            Check(11, "NewErrorGroup"),
            Check(15, "NewErrorGroup", (Expect("new_error_group", 1, job),)),
            Check(23, "NewErrorGroup"),
        )),
        # One failed metrics export a minute from minute 11 to 41.
        PromTest("telemetry_export_failures", (
            (_series("sizewise_telemetry_export_failures_total", {**JOB, "sizewise_telemetry_signal": "metrics"}),
             "0x10 1+1x30 31x30"),
        ), (
            Check(18, "TelemetryExportFailures"),
            Check(25, "TelemetryExportFailures",
                  (Expect("telemetry_export_failures", 10,
                          {"job": "sizewise", "sizewise_telemetry_signal": "metrics"}),)),
            Check(55, "TelemetryExportFailures"),
        )),
    )
