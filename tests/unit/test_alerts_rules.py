"""The alert catalog: the spec's examples, coverage, names that exist, rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sizewise_otel import AlertRule, AlertSeverity
from sizewise_otel.alerts import render
from sizewise_otel.alerts.promtests import default_tests
from sizewise_otel.alerts.rules import DASHBOARDS, DEFAULT_RULES, RECORDING_RULES, expand
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
            "ScrapeTargetDown", "TelemetryExportFailures"} <= alertnames
    assert len({r.name for r in DEFAULT_RULES}) == len(DEFAULT_RULES)
    # the SRE workbook's multi-window, multi-burn-rate pairs
    slo = " ".join(r.promql for r in DEFAULT_RULES if r.alertname == "LatencySLOBudgetBurn")
    for window, limit in (("1h", "0.144"), ("5m", "0.144"), ("6h", "0.06"), ("30m", "0.06"),
                          ("1d", "0.03"), ("2h", "0.03"), ("3d", "0.01")):
        assert f"ratio_rate{window} > {limit}" in slo


def _known_series() -> tuple[set[str], set[str]]:
    names = {"up"} | {r.record for r in RECORDING_RULES}
    labels = {"job", "instance", "le"}
    for sig in SIGNALS:
        names.add(sig.prom_name)
        if sig.kind is Kind.HISTOGRAM:
            names |= {f"{sig.prom_name}_{s}" for s in ("bucket", "count", "sum")}
        labels |= set(sig.prom_labels)
    return names, labels


FUNCS = {"sum", "rate", "increase", "histogram_quantile", "by", "on", "and", "or", "unless", "offset"}


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
    for test in default_tests():  # before its for, firing, resolved
        assert not test.checks[0].firing and test.checks[1].firing and not test.checks[-1].firing


def test_expand_matches_prometheus_formats() -> None:
    labels = {"job": "api", "instance": "h:1"}
    assert expand("{{ $labels.job }} on {{ $labels.instance }}", labels, 0) == "api on h:1"
    assert expand('{{ $value | printf "%.1f" }}%', labels, 97.25) == "97.2%"
    assert expand("{{ $value | humanizePercentage }}", labels, 0.25) == "25%"
    assert expand("{{ $labels.missing }}", labels, 0) == ""
    with pytest.raises(ValueError):
        expand("{{ $value | humanize }}", labels, 1)


def test_render_is_deterministic_and_checked_in() -> None:
    files = render.render_files()
    assert files == render.render_files()
    assert set(files) == {render.RECORDING_FILE, render.ALERTS_FILE, render.TESTS_FILE, render.DOC_FILE}
    for rel, content in files.items():
        path = ROOT / rel
        assert path.exists() and path.read_text() == content, f"{rel} is stale: run sizewise-otel render"
