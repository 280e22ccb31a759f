"""Capacity-planning and traffic-distribution widgets: where they sit, what they read, and the
expression nodes they need (``on (...) group_left``, ``clamp_max``) in PromQL and in-process."""

from __future__ import annotations

import promql_parser
import pytest

from sizewise_otel.alerts import rules
from sizewise_otel.dashboard.expr import Samples, labels_of, m, per_group, sum_
from sizewise_otel.dashboard.widgets import RECORDED_METRICS, widget, widgets

CAPACITY = ("disk_days_until_full", "memory_days_until_limit", "cpu_days_until_saturation",
            "resource_trend", "resource_projection_24h")
MEASURED = ("instance_load_vs_capacity", "instance_capacity_utilization")
TRAFFIC = ("http_requests_per_instance", "http_request_share_per_instance", "http_load_vs_fair_share",
           "http_latency_p95_per_instance", "health_per_instance")


def snapshot(values: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> Samples:
    return Samples([(0.0, values)])


def test_panels_sit_on_the_boards_the_issue_names() -> None:
    assert {widget(i).dashboard for i in CAPACITY} == {"system-overview"}
    assert {widget(i).dashboard for i in MEASURED + TRAFFIC} == {"application-performance"}
    assert "highest request rate one instance" in widget("instance_load_vs_capacity").description
    assert "latency SLO" in widget("instance_capacity_utilization").description


def test_recorded_series_the_panels_read_are_recording_rules() -> None:
    records = {r.record for r in rules.RECORDING_RULES}
    used = set().union(*(q.expr.metric_names() for w in widgets() for q in w.queries))
    recorded = {name for name in used if ":" in name}
    assert recorded == set(RECORDED_METRICS) and recorded <= records


def test_group_left_renders_parseable_promql_and_evaluates_per_group() -> None:
    inst = sum_(m("x"), "job", "instance")
    share = per_group("/", inst, sum_(m("x"), "job"), "job")
    text = share.promql().replace("$job", ".+").replace("$instance", ".+")
    assert " / on (job) group_left sum by (job) (" in text
    promql_parser.parse(text)
    samples = snapshot({"x": {labels_of({"job": "j", "instance": "a"}): 3.0,
                              labels_of({"job": "j", "instance": "b"}): 1.0,
                              labels_of({"job": "k", "instance": "c"}): 5.0}})
    got = {dict(k)["instance"]: v for k, v in share.evaluate(samples).items()}
    assert got == {"a": 0.75, "b": 0.25, "c": 1.0}


@pytest.mark.parametrize(("fit", "slope_per_day", "days"), [
    (70.0, 10.0, 3.0),  # 30 points left at 10 a day
    (50.0, 0.0, 365.0),  # flat: capped at a year
    (50.0, -5.0, 365.0),  # shrinking: never, shown as the cap
    (101.0, 1.0, 0.0),  # past the limit already
])
def test_days_until_full(fit: float, slope_per_day: float, days: float) -> None:
    metric = "sizewise_disk_usage_percent"
    lbl = labels_of({"system_filesystem_mountpoint": "data"})
    samples = snapshot({rules.fit_record(metric): {lbl: fit},
                        rules.slope_record(metric): {lbl: slope_per_day / 86400}})
    assert widget("disk_days_until_full").expr.evaluate(samples) == {lbl: pytest.approx(days)}
    projected = widget("resource_projection_24h").expr.evaluate(samples)
    disk = labels_of({"system_filesystem_mountpoint": "data", "resource": "disk"})
    assert projected == {disk: pytest.approx(fit + slope_per_day)}


def test_fair_share_in_process_is_one_instance_at_one() -> None:
    """Embedded, the process is the only instance it knows: all of the traffic, a fair share of 1."""
    lbl = labels_of({"http_route": "/r", "http_response_status_code": "200"})
    samples = Samples([(0.0, {"http_server_request_duration_seconds_count": {lbl: 0.0}}),
                       (10.0, {"http_server_request_duration_seconds_count": {lbl: 50.0}})])
    assert widget("http_request_share_per_instance").expr.evaluate(samples) == {(): 100.0}
    assert widget("http_load_vs_fair_share").expr.evaluate(samples) == {(): 1.0}
