"""The alert catalog: the spec's examples, coverage, names that exist, rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sizewise_otel import AlertRule, AlertSeverity
from sizewise_otel.alerts import prometheus_files, rules
from sizewise_otel.alerts.promtests import default_tests
from sizewise_otel.alerts.rules import (
    DASHBOARDS,
    DEFAULT_RULES,
    RECORDING_RULES,
    RUNBOOK_BASE_URL_ENV,
    expand,
)
from sizewise_otel.catalog import SIGNALS, Kind

ROOT = Path(__file__).resolve().parents[2]


def test_spec_examples_work_verbatim() -> None:
    cpu_alert = AlertRule(
        name="high_cpu_usage",
        metric_name="sizewise_cpu_usage_percent",
        condition=">",
        threshold=80.0,
        duration_seconds=300,  # 5 minutes
        severity=AlertSeverity.WARNING,
        description="High CPU usage detected"
    )
    error_alert = AlertRule(
        name="high_error_rate",
        metric_name="sizewise_error_rate_percent",
        condition=">",
        threshold=5.0,
        duration_seconds=60,  # 1 minute
        severity=AlertSeverity.CRITICAL,
        description="High error rate detected"
    )
    assert cpu_alert.promql == "sizewise_cpu_usage_percent > 80"
    assert cpu_alert.for_duration == "5m" and cpu_alert.embedded
    assert error_alert.promql == "sizewise_error_rate_percent > 5"
    assert error_alert.alertname == "HighErrorRate" and error_alert.for_duration == "1m"
    assert cpu_alert.compare(80.5) and not cpu_alert.compare(80.0)


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        AlertRule("x", "m", "=>", 1, 0, AlertSeverity.INFO, "d")
    with pytest.raises(ValueError):
        AlertRule("Bad Name", "m", ">", 1, 0, AlertSeverity.INFO, "d")
    with pytest.raises(ValueError):
        AlertRule("x", "m", ">", 1, 0, "loud", "d")  # type: ignore[arg-type]


def test_default_catalog_covers_the_issue() -> None:
    by_name = {r.name: r for r in DEFAULT_RULES}
    cpu, err = by_name["high_cpu_usage"], by_name["high_error_rate"]
    assert (cpu.metric_name, cpu.condition, cpu.threshold, cpu.duration_seconds, cpu.severity) == (
        "sizewise_cpu_usage_percent", ">", 80.0, 300, AlertSeverity.WARNING)
    assert (err.metric_name, err.condition, err.threshold, err.duration_seconds, err.severity) == (
        "sizewise_error_rate_percent", ">", 5.0, 60, AlertSeverity.CRITICAL)
    alertnames = {r.alertname for r in DEFAULT_RULES}
    assert {"HighCpuUsage", "HighErrorRate", "LatencySLOBudgetBurn", "HighMemoryUsage", "HighDiskUsage",
            "DatabaseDown", "DatabasePoolSaturation", "RedisDown", "CacheHitRatioCollapse",
            "CriticalHealthCheck", "HvacCalculationFailureRate", "ErrorSpike", "NewErrorGroup",
            "ScrapeTargetDown", "TelemetryExportFailures", "Watchdog", "InstanceDown", "ServiceAbsent",
            "ContainerCpuThrottling", "ContainerOomKilled", "ContainerMemoryNearLimit",
            "DiskFillsWithin24h", "DiskFillsWithin4h", "MemoryLimitWithin24h", "TrafficImbalance"} <= alertnames
    assert len({r.name for r in DEFAULT_RULES}) == len(DEFAULT_RULES)
    # the SRE workbook's multi-window, multi-burn-rate pairs
    slo = " ".join(r.promql for r in DEFAULT_RULES if r.alertname == "LatencySLOBudgetBurn")
    for window, limit in (("1h", "0.144"), ("5m", "0.144"), ("6h", "0.06"), ("30m", "0.06"),
                          ("1d", "0.03"), ("2h", "0.03"), ("3d", "0.01")):
        assert f"ratio_rate{window} > {limit}" in slo


def _known_series() -> tuple[set[str], set[str]]:
    names = {"up", "target_info"} | {r.record for r in RECORDING_RULES}  # what the push path adds
    labels = {"job", "instance", "le"}
    for sig in SIGNALS:
        names.add(sig.prom_name)
        if sig.kind is Kind.HISTOGRAM:
            names |= {f"{sig.prom_name}_{s}" for s in ("bucket", "count", "sum")}
        labels |= set(sig.prom_labels)
    return names, labels


FUNCS = {"sum", "count", "group", "rate", "increase", "histogram_quantile", "vector", "present_over_time",
         "absent_over_time", "max_over_time", "min_over_time", "by", "on", "and", "or", "unless", "offset",
         "max", "predict_linear", "deriv", "group_left"}


@pytest.mark.parametrize("expr", [r.promql for r in DEFAULT_RULES] + [r.expr for r in RECORDING_RULES])
def test_rules_use_only_catalog_names_and_labels(expr: str) -> None:
    names, labels = _known_series()
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\[[0-9a-z]+\]|offset [0-9]+[smhd]", "", bare)
    for match in re.finditer(r"\{([^}]*)\}", bare):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", match.group(1)):
            assert label in labels, f"unknown label {label} in {expr}"
    for match in re.finditer(r"\b(?:by|on)\s*\(([^)]*)\)", bare):
        for label in re.findall(r"[a-z_]+", match.group(1)):
            assert label in labels, f"unknown label {label} in {expr}"
    bare = re.sub(r"\{[^}]*\}|\b(?:by|on)\s*\([^)]*\)", "", bare)
    for ident in re.findall(r"[a-z_][a-z0-9_:]*", bare):
        assert ident in FUNCS or ident in names, f"unknown series {ident} in {expr}"


def test_every_alert_is_documented_and_annotated() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbooks, re.M)}
    alerting_doc = (ROOT / "docs" / "alerting.md").read_text()
    for rule in DEFAULT_RULES:
        ann = rule.annotation_templates()
        assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(ann)
        assert rule.runbook_anchor in anchors, f"docs/runbooks.md lacks '## {rule.alertname}'"
        assert rule.dashboard in DASHBOARDS.values()
        assert ann["dashboard_url"] == f"http://localhost:3000/d/{rule.dashboard}"
        assert rule.alertname in alerting_doc
        expand(ann["summary"] + ann["description"] + ann["value"], {"job": "j"}, 0.5)


def test_recording_rules_are_named_level_metric_operations() -> None:
    for rule in RECORDING_RULES:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule.record), rule.record


def test_every_alert_rule_has_a_promtool_test() -> None:
    covered = {e.rule for t in default_tests() for c in t.checks for e in c.firing}
    assert covered == {r.name for r in DEFAULT_RULES}
    by_name = {t.name: t for t in default_tests()}
    for rule in DEFAULT_RULES:
        if rule.name == "watchdog":  # never resolves: firing from the first evaluation to the last
            assert all(c.firing for c in by_name["watchdog"].checks)
            continue
        test = next(t for t in by_name.values() if any(e.rule == rule.name for c in t.checks for e in c.firing))
        checks = [c for c in test.checks if c.alertname == rule.alertname]
        # before its for, firing, resolved
        assert not checks[0].firing and checks[1].firing and not checks[-1].firing, rule.name


def test_runbook_url_points_into_this_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNBOOK_BASE_URL_ENV, raising=False)
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for rule in DEFAULT_RULES:
        path, _, anchor = rule.runbook_url.partition("#")
        assert (ROOT / path).resolve() == (ROOT / "docs" / "runbooks.md").resolve()
        assert re.search(rf"^## {re.escape(rule.alertname)}$", runbooks, re.M | re.I), anchor
    monkeypatch.setenv(RUNBOOK_BASE_URL_ENV, "https://docs.example.internal/sizewise/runbooks")
    rule = DEFAULT_RULES[0]
    assert rule.runbook_url == f"https://docs.example.internal/sizewise/runbooks#{rule.runbook_anchor}"
    assert rule.annotation_templates()["runbook_url"] == rule.runbook_url


def test_no_prometheus_rule_reads_a_per_process_percent() -> None:
    """Ratios come from counters summed over instances, never from a worker's own percent gauge."""
    for rule in DEFAULT_RULES:
        assert "sizewise_error_rate_percent" not in rule.promql, rule.name
    records = {r.record: r.expr for r in RECORDING_RULES}
    error_rate = next(r for r in DEFAULT_RULES if r.name == "high_error_rate")
    assert error_rate.embedded  # in-process the spec's gauge still drives it
    for record in re.findall(r"job:[a-z0-9_:]+", error_rate.promql):
        assert records[record].startswith("sum by (job) (rate(http_server_request_duration_seconds_count")


def test_watchdog_always_fires_and_is_prometheus_only() -> None:
    [watchdog] = [r for r in DEFAULT_RULES if r.alertname == "Watchdog"]
    assert watchdog.promql == "vector(1)" and not watchdog.embedded and watchdog.duration_seconds == 0


def test_liveness_rules_watch_the_push_path() -> None:
    by_name = {r.alertname: r for r in DEFAULT_RULES}
    records = {r.record: r.expr for r in RECORDING_RULES}
    assert records["job_instance:sizewise_instance:up"] == (
        "group by (job, instance) (target_info unless on (job, instance) up)")
    assert "job_instance:sizewise_instance:up" in by_name["InstanceDown"].promql
    assert "absent_over_time" in by_name["ServiceAbsent"].promql
    for name in ("InstanceDown", "ServiceAbsent"):
        rule = by_name[name]
        assert rule.severity == AlertSeverity.CRITICAL and rule.duration_seconds == 60
        assert 'unless on () (up{job="otel-collector"} == 0)' in rule.promql
    collector = yaml.safe_load((ROOT / "collector" / "config.yaml").read_text())
    expiration = collector["exporters"]["prometheus"]["metric_expiration"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    export_ms = int(compose["services"]["app"]["environment"]["OTEL_METRIC_EXPORT_INTERVAL"])
    seconds = int(expiration.rstrip("s")) if expiration.endswith("s") else int(expiration.rstrip("m")) * 60
    assert seconds >= 3 * export_ms / 1000  # a late export does not drop a live instance
    # compose: expiration + scrape 10 s + two evaluations 15 s + for + group_wait 10 s under 5 min
    assert seconds + 10 + 2 * 15 + by_name["InstanceDown"].duration_seconds + 10 < 300


def test_expand_matches_prometheus_formats() -> None:
    labels = {"job": "api", "instance": "h:1"}
    assert expand("{{ $labels.job }} on {{ $labels.instance }}", labels, 0) == "api on h:1"
    assert expand('{{ $value | printf "%.1f" }}%', labels, 97.25) == "97.2%"
    assert expand("{{ $value | humanizePercentage }}", labels, 0.25) == "25%"
    assert expand("{{ $labels.missing }}", labels, 0) == ""
    with pytest.raises(ValueError):
        expand("{{ $value | humanize }}", labels, 1)


def test_render_is_deterministic_and_checked_in() -> None:
    files = prometheus_files.render_files()
    assert files == prometheus_files.render_files()
    pf = prometheus_files
    assert set(files) == {pf.RECORDING_FILE, pf.ALERTS_FILE, pf.TESTS_FILE, pf.DOC_FILE}
    for rel, content in files.items():
        path = ROOT / rel
        assert path.exists() and path.read_text() == content, f"{rel} is stale: run sizewise-otel render"


def test_capacity_alerts_project_a_long_fit_past_a_floor() -> None:
    """The node mixin's shape: predict_linear over hours, a horizon, a floor, and a long for."""
    by_name = {r.alertname: r for r in DEFAULT_RULES}
    for name, floor, horizon, severity, for_s in (
            ("DiskFillsWithin24h", 60, 86400, AlertSeverity.WARNING, 3600),
            ("DiskFillsWithin4h", 80, 14400, AlertSeverity.CRITICAL, 1800),
            ("MemoryLimitWithin24h", 70, 86400, AlertSeverity.WARNING, 3600)):
        rule = by_name[name]
        metric = rule.metric_name
        assert rule.promql == f"{metric} > {floor} and predict_linear({metric}[6h], {horizon}) >= 100"
        assert (rule.severity, rule.duration_seconds, rule.embedded) == (severity, for_s, False)
    # the panels read the same fit: predict_linear(x[6h], h) = fit now + h * slope
    records = {r.record: r.expr for r in RECORDING_RULES}
    for metric in rules.RESOURCES:
        assert records[rules.fit_record(metric)] == f"predict_linear({metric}[6h], 0)"
        assert records[rules.slope_record(metric)] == f"deriv({metric}[6h])"


def test_capacity_is_the_best_sustained_rate_within_the_slo() -> None:
    records = {r.record: r.expr for r in RECORDING_RULES}
    assert records[rules.INSTANCE_RATE] == (
        "sum by (job, instance) (rate(http_server_request_duration_seconds_count[5m]))")
    slo_miss = records[rules.INSTANCE_SLO_MISS]
    assert f'le="{rules.SLO_LATENCY_SECONDS}"' in slo_miss and "sum by (job, instance)" in slo_miss
    assert records[rules.INSTANCE_BEST_RATE] == (
        f"max by (job) ({rules.INSTANCE_RATE} and on (job, instance) ({rules.INSTANCE_SLO_MISS} <= 0.01))")
    assert records[rules.JOB_CAPACITY] == f"max_over_time({rules.INSTANCE_BEST_RATE}[7d])"
    assert rules.JOB_CAPACITY in records[rules.INSTANCE_CAPACITY]


def test_traffic_imbalance_counts_requests_against_live_instances() -> None:
    [rule] = [r for r in DEFAULT_RULES if r.alertname == "TrafficImbalance"]
    assert rule.duration_seconds == 600 and rule.severity == AlertSeverity.WARNING and not rule.embedded
    # share of the job's counters x live instances (target_info), never a per-process percent
    total = "sum by (job) (instance:http_server_requests:rate5m)"  # parts and total from one evaluation
    assert rule.promql == (
        f"instance:http_server_requests:rate5m / on (job) group_left {total}"
        " * on (job) group_left job:sizewise_instances:count > 1.5"
        f" and on (job) job:sizewise_instances:count >= 2 and on (job) {total} > 1")
    names = {t.name for t in default_tests()}
    assert {"traffic_balanced_is_silent", "traffic_single_instance_is_silent", "traffic_low_rate_is_silent",
            "disk_full_but_flat_or_slow_is_silent"} <= names
