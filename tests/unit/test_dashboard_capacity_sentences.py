"""Capacity-planning sentences of /dashboard/overview, from synthetic in-process history: the 6 h fit,
the widgets' own "days until 100 %" expressions, the measured capacity within the latency SLO, and
what is said while the history is too short. One check runs through an instrumented app."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sizewise_otel import instrument
from sizewise_otel.alerts import rules
from sizewise_otel.dashboard import capacity
from sizewise_otel.dashboard.expr import Labels, Samples, labels_of
from sizewise_otel.dashboard.history import History
from sizewise_otel.dashboard.widgets import HTTP, HTTP_COUNT
from sizewise_otel.settings import Settings

T0 = 28_333_334 * 60.0  # on a minute boundary: one record per 1-minute slot of the 24 h tier
MINUTE = 60.0


def fill(history: History, series: dict[tuple[str, Labels], Callable[[int], float]], minutes: int,
         start: float = T0) -> float:
    """One value a minute per (widget, labels) for ``minutes`` minutes (inclusive), in time order (the
    tiers are rings: a write goes to the current slot); returns the last record's time."""
    for k in range(minutes + 1):
        history.record(start + k * MINUTE, {(f"w:{w}:0", lbl): fn(k) for (w, lbl), fn in series.items()})
    return start + minutes * MINUTE


def items_by_signal(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["signal"], []).append(item)
    return out


def test_linear_fit_is_least_squares_value_now_and_slope() -> None:
    points = [(0.0, 1.0), (10.0, 2.0), (20.0, 3.5)]
    value, slope = capacity.linear_fit(points, 20.0) or (0.0, 0.0)
    assert slope == pytest.approx(0.125)
    assert value == pytest.approx(13 / 6 + 0.125 * 10)  # the mean point (10, 13/6) plus 10 s of slope
    assert capacity.linear_fit([(5.0, 1.0)], 5.0) is None


def test_six_hour_trends_become_sentences_with_the_widgets_numbers() -> None:
    history = History()
    # disk: 50 % + 1/256 % a minute = 5.625 % a day; 6 h later at 51.40625 % -> 48.59375 / 5.625 days
    # memory of a container: 80 % + 1/64 % a minute = 22.5 % a day; at 85.625 % -> 0.639 days; CPU flat
    now = fill(history, {("system_disk", labels_of({"system_filesystem_mountpoint": "/data"})): lambda k: 50 + k / 256,
                         ("system_memory", labels_of({"sizewise_usage_source": "container"})): lambda k: 80 + k / 64,
                         ("system_cpu", labels_of({"sizewise_usage_source": "host"})): lambda k: 23.5}, 360)
    got = items_by_signal(capacity.embedded(history, capacity.CapacityRecord(), Samples([]), now))

    [disk] = got["disk"]
    assert disk["sentence"] == "Disk /data fills in 8.6 days at the 6 h trend (now 51.4 %)"
    assert disk["value"] == pytest.approx(48.59375 / 5.625, abs=0.005)
    assert (disk["unit"], disk["horizon"], disk["widget"]) == ("d", "6h", "disk_days_until_full")
    [memory] = got["memory"]
    assert memory["sentence"] == "Memory reaches its limit in 15.3 hours at the 6 h trend (now 85.6 %)"
    assert memory["value"] == pytest.approx(14.375 / 22.5, abs=0.005)
    [cpu] = got["cpu"]
    assert cpu["sentence"] == "CPU: no upward trend over the last 6 h (now 23.5 %)"
    assert cpu["value"] is None


def test_a_slow_trend_reads_over_a_year_and_a_full_disk_reads_full() -> None:
    history = History()
    # 1/65536 % a minute: 0.022 % a day, over 2 000 days to go: the widgets' one-year cap
    mount = "system_filesystem_mountpoint"
    now = fill(history, {("system_disk", labels_of({mount: "/slow"})): lambda k: 50 + k / 65536,
                         ("system_disk", labels_of({mount: "/full"})): lambda k: 99 + k / 128}, 360)
    disks = {i["labels"]["system_filesystem_mountpoint"]: i for i in
             items_by_signal(capacity.embedded(history, capacity.CapacityRecord(), Samples([]), now))["disk"]}
    assert disks["/slow"]["sentence"] == "Disk /slow fills in over a year at the 6 h trend (now 50.0 %)"
    assert disks["/slow"]["value"] == 365.0
    assert disks["/full"]["sentence"] == "Disk /full is at 100 % already (now 101.8 %)"
    assert disks["/full"]["value"] == 0.0


def test_short_history_says_which_window_is_needed_and_gives_no_number() -> None:
    history = History()
    now = fill(history, {("system_disk", labels_of({"system_filesystem_mountpoint": "/data"})): lambda k: 50 + k}, 25)
    got = items_by_signal(capacity.embedded(history, capacity.CapacityRecord(), Samples([]), now))
    [disk] = got["disk"]
    assert disk["sentence"] == ("Disk /data: not enough history for the 6 h trend yet "
                                "(needs 6 h; 25 min collected so far)")
    assert disk["value"] is None
    [memory] = got["memory"]  # no memory series at all yet
    assert memory["sentence"] == ("Memory: not enough history for the 6 h trend yet "
                                  "(needs 6 h; 0 s collected so far)")


ROUTE = labels_of({"http_route": "/calc"})


def http_snapshot(total: float, slow: float) -> dict[str, dict[Labels, float]]:
    """The request histogram's count and its le=0.5 bucket (``slow`` requests above 0.5 s)."""
    bucket = labels_of({"http_route": "/calc", "le": "0.5"})
    return {HTTP_COUNT: {ROUTE: total}, f"{HTTP}_bucket": {bucket: total - slow}}


def test_measured_capacity_is_the_best_five_minutes_within_the_slo() -> None:
    record = capacity.CapacityRecord()
    ts, total, slow = T0, 0.0, 0.0
    for _ in range(12 * 10):  # 10 minutes at 20 req/s, all fast
        ts, total = ts + 5, total + 100
        record.observe(ts, Samples([(ts, http_snapshot(total, slow))]))
    for _ in range(12 * 10):  # 10 minutes at 30 req/s, half slow: outside the SLO, never a record
        ts, total, slow = ts + 5, total + 150, slow + 75
        record.observe(ts, Samples([(ts, http_snapshot(total, slow))]))
    assert record.capacity() == pytest.approx(20.0)
    # now 12.2 req/s over the last minute: 61 % of the 20 req/s measured
    window = Samples([(ts + 5, http_snapshot(total, slow)), (ts + 65, http_snapshot(total + 732, slow))])
    [item] = items_by_signal(capacity.embedded(History(), record, window, ts + 65))["requests"]
    assert item["sentence"] == ("This instance serves 61 % of its measured capacity "
                                "(1,200 req/min at the latency SLO)")
    assert item["value"] == pytest.approx(61.0)
    assert (item["unit"], item["horizon"], item["widget"]) == ("percent", "7d", "instance_capacity_utilization")


def test_capacity_before_five_minutes_of_traffic_is_not_a_number() -> None:
    record = capacity.CapacityRecord()
    for i in range(25):  # 2 minutes
        record.observe(T0 + 5 * i, Samples([(T0 + 5 * i, http_snapshot(10.0 * i, 0.0))]))
    [item] = items_by_signal(capacity.embedded(History(), record, Samples([]), T0 + 120))["requests"]
    assert item["sentence"] == ("This instance: capacity not measured yet (needs 5 min of requests within "
                                "the latency SLO, 99% of requests under 0.5 s; 2 min of samples so far)")
    assert item["value"] is None and record.capacity() is None


def test_overview_through_an_instrumented_app_lists_and_renders_the_sentences() -> None:
    app = FastAPI()

    @app.get("/calc")
    async def calc() -> dict[str, int]:
        return {"ok": 1}

    handle = instrument(app, settings=Settings(error_store_url="sqlite://"))
    handle.dashboard.capacity_record = capacity.CapacityRecord()  # the singleton's, from earlier tests
    # six hours of a synthetic mount, written before the app samples the real ones (a ring takes
    # writes in time order: this also clears what earlier tests left in the last 6 h)
    start = (time.time() // MINUTE - 360) * MINUTE
    fill(handle.dashboard.history, {("system_disk", labels_of({"system_filesystem_mountpoint": "/test-capacity"})):
                                    lambda k: 50 + k / 256}, 360, start=start)
    with TestClient(app) as http:
        for _ in range(3):
            assert http.get("/calc").status_code == 200
        http.portal.call(handle.dashboard.sample)  # a sample now, whether or not the sampler just ran
        overview = http.get("/dashboard/overview").json()
        page = http.get("/dashboard").text
        script = http.get("/dashboard/static/dashboard.js").text
    disks = {i["labels"].get("system_filesystem_mountpoint"): i for i in overview["capacity"] if i["signal"] == "disk"}
    assert disks["/test-capacity"]["sentence"] == "Disk /test-capacity fills in 8.6 days at the 6 h trend (now 51.4 %)"
    real = [i for m, i in disks.items() if m != "/test-capacity"]
    assert real and all(i["value"] is None and "not enough history for the 6 h trend" in i["sentence"]
                        for i in real)
    [requests] = [i for i in overview["capacity"] if i["signal"] == "requests"]
    assert requests["value"] is None and requests["sentence"].startswith("This instance: capacity not measured yet")
    assert {"signal", "sentence", "value", "unit", "horizon"} <= set(requests)
    assert 'id="capacity"' in page and "o.capacity" in script


def test_prometheus_answers_become_the_same_sentences_per_instance() -> None:
    """PROMETHEUS_URL mode: the widgets' PromQL answers (here the same expressions evaluated on the
    recorded series Prometheus would hold) give the sentences, one per instance."""
    disk = labels_of({"job": "svc", "instance": "a:1", "system_filesystem_mountpoint": "/data"})
    mem = labels_of({"job": "svc", "instance": "a:1", "sizewise_usage_source": "container"})
    a, b = labels_of({"job": "svc", "instance": "a:1"}), labels_of({"job": "svc", "instance": "b:1"})
    day = 86400.0
    snapshot = {
        rules.fit_record(capacity.DISK): {disk: 70.0}, rules.slope_record(capacity.DISK): {disk: 10 / day},
        capacity.DISK: {disk: 69.0},
        rules.fit_record(capacity.MEMORY): {mem: 50.0}, rules.slope_record(capacity.MEMORY): {mem: -1 / day},
        rules.INSTANCE_CAPACITY: {a: 20.0, b: 20.0},
    }
    now = 1000.0
    # the per-instance request rate: 61 % and 30 % of 20 req/s over 60 s
    http = {HTTP_COUNT: {a: 0.0, b: 0.0}}
    later = {**snapshot, HTTP_COUNT: {a: 732.0, b: 360.0}}
    samples = Samples([(now - 60, http), (now, later)])

    async def query(expr: Any) -> Any:
        return expr.evaluate(samples)

    got = items_by_signal(anyio.run(capacity.from_prometheus, query))
    assert [i["sentence"] for i in got["disk"]] == ["Disk /data on a:1 fills in 3.0 days at the 6 h trend (now 69.0 %)"]
    assert [i["sentence"] for i in got["memory"]] == ["Memory on a:1: no upward trend over the last 6 h"]
    assert [i["sentence"] for i in got["cpu"]] == ["CPU: not enough history for the 6 h trend yet (needs 6 h)"]
    assert [i["sentence"] for i in got["requests"]] == [
        "Instance a:1 serves 61 % of its measured capacity (1,200 req/min at the latency SLO)",
        "Instance b:1 serves 30 % of its measured capacity (1,200 req/min at the latency SLO)"]
