"""Capacity and traffic-distribution panels and the TrafficImbalance alert, on real processes.

Two ``sizewise-otel demo`` processes push OTLP through the built collector to the pinned
Prometheus with the checked-in rules (tests/multiapp.py). Requests go 80/20 to the two instances
through their own URLs, as an uneven load balancer would send them. Checked, with the panel
queries taken from the checked-in dashboard JSON (``$job`` = the app's job, ``$instance`` = All):
the share panel shows 80 % and 20 %, "Load vs fair share" 1.6 and 0.4, the per-instance panels
have one series per instance; TrafficImbalance's own expression (the rule's PromQL, queried
directly: its 10-minute ``for`` need not elapse) returns the hot instance and only it; every panel
of the capacity and traffic rows returns data, the days-until-full values within 0..365.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sizewise_otel.alerts.rules import DEFAULT_RULES
from sizewise_otel.dashboard.widgets import widget, widgets
from tests import stack
from tests.multiapp import MultiApp

pytestmark = pytest.mark.integration

DASHBOARDS = stack.ROOT / "grafana" / "dashboards"
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval at a 30 s step (>= 4 x the 1 s scrape): two
# instances exporting at their own moments differ by a scrape or two, a smaller error over 30 s
HOT_SHARE = 0.8  # of every 5 requests, 4 go to instance 0 and 1 to instance 1
SHARE_TOLERANCE = 0.07  # percentage points / 100: rate windows of two series end a scrape apart
NEW_ROWS = ("Capacity planning (6 h trend, projected)", "Capacity (measured per instance)",
            "Traffic distribution (per instance)")
DEADLINE = 180.0  # the load must lift the job's 5 m rate past 1 request/s (a young series' rate()
# is its increase over the whole 5 m window), at a few requests/s on a loaded 2-core machine


@pytest.fixture(scope="module")
def apps() -> Iterator[MultiApp]:
    with MultiApp(2) as running:
        yield running


class Load:
    """Requests in rounds of 4 to instance 0 and 1 to instance 1, in a thread, until stopped."""

    def __init__(self, apps: MultiApp) -> None:
        self.apps = apps
        self.sent = [0, 0]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, daemon=True)

    def _drive(self) -> None:
        from sizewise_otel.demo import hvac

        rng = random.Random(22)
        clients = [httpx.Client(base_url=self.apps.url(i), timeout=10) for i in (0, 1)]
        try:
            while not self._stop.is_set():
                for target in (0, 0, 0, 0, 1):
                    resp = clients[target].post("/api/hvac/calculate", json=hvac.sample_request(rng))
                    assert resp.status_code in (200, 201), resp.text  # 200: from the cache
                    self.sent[target] += 1
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            for c in clients:
                c.close()

    def check(self) -> None:
        """Fail at once if the load stopped: waiting for its effect would only time out."""
        assert not self.errors, f"the load failed: {self.errors!r}"


@pytest.fixture(scope="module")
def skewed_load(apps: MultiApp) -> Iterator[Load]:
    load = Load(apps)
    load._thread.start()
    try:
        yield load
    finally:
        load._stop.set()
        load._thread.join(timeout=30)
    load.check()


def poll(what: str, load: Load, fetch: Callable[[], Any], ok: Callable[[Any], bool],
         timeout: float = DEADLINE) -> Any:
    """``fetch()`` every second until ``ok`` holds on its result; fail with the last result."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        load.check()
        last = fetch()
        if ok(last):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s; last: {last}")
        time.sleep(1)


def panel(widget_id: str) -> dict[str, Any]:
    w = widget(widget_id)
    board = json.loads((DASHBOARDS / f"{w.dashboard}.json").read_text())
    return next(p for p in board["panels"] if p.get("title") == w.title)


def promql(apps: MultiApp, expr: str) -> str:
    """A panel expression as Grafana sends it: $job the app's job (regex-escaped), $instance All."""
    job = re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\1", apps.job)  # Grafana's escaping of the value
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", job)
            .replace("$instance", ".+"))


def by_instance(apps: MultiApp, widget_id: str, ref: int = 0) -> dict[str, float]:
    expr = promql(apps, panel(widget_id)["targets"][ref]["expr"])
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in apps.query(expr)}


def test_share_panels_show_the_skew(apps: MultiApp, skewed_load: Load) -> None:
    hot, cold = apps.instance_ids
    poll("both instances in the share panel", skewed_load, lambda: by_instance(apps, "http_request_share_per_instance"),
         lambda v: set(v) == {hot, cold} and v[cold] > 0)
    shares, fair = [], []
    for _ in range(5):  # several readings: one lucky scrape must not pass the test
        share = by_instance(apps, "http_request_share_per_instance")
        assert set(share) == {hot, cold}, share
        assert sum(share.values()) == pytest.approx(100, abs=0.01)
        shares.append(share[hot] / 100)
        fair.append(by_instance(apps, "http_load_vs_fair_share"))
        time.sleep(1)
    print(f"\nhot share readings {[round(s, 3) for s in shares]}, sent {skewed_load.sent}")
    assert statistics.median(shares) == pytest.approx(HOT_SHARE, abs=SHARE_TOLERANCE)
    assert all(abs(s - HOT_SHARE) <= 2 * SHARE_TOLERANCE for s in shares), shares
    last = fair[-1]
    assert last[hot] == pytest.approx(2 * shares[-1], abs=0.05)  # share x 2 live instances
    assert last[hot] == pytest.approx(2 * HOT_SHARE, abs=2 * 2 * SHARE_TOLERANCE)
    assert last[cold] == pytest.approx(2 * (1 - HOT_SHARE), abs=2 * 2 * SHARE_TOLERANCE)
    rates = by_instance(apps, "http_requests_per_instance")
    assert set(rates) == {hot, cold} and rates[hot] > 2 * rates[cold], rates
    assert set(by_instance(apps, "http_latency_p95_per_instance")) == {hot, cold}


def test_imbalance_alert_expression_returns_the_hot_instance(apps: MultiApp, skewed_load: Load) -> None:
    [rule] = [r for r in DEFAULT_RULES if r.alertname == "TrafficImbalance"]
    hot, _cold = apps.instance_ids
    result = poll("TrafficImbalance's expression returning an instance", skewed_load, lambda: apps.query(rule.promql),
                  lambda r: len(r) > 0)
    assert [(r["metric"]["job"], r["metric"]["instance"]) for r in result] == [(apps.job, hot)], result
    value = float(result[0]["value"][1])
    print(f"\nTrafficImbalance value {value:.3f} (share x instances), sent {skewed_load.sent}")
    # the 5 m rates of both instances come from the same interleaved rounds: 4/5 of the job's rate
    assert value == pytest.approx(2 * HOT_SHARE, abs=0.08)
    assert apps.value(f'job:sizewise_instances:count{{job="{apps.job}"}}') == 2


def test_capacity_and_traffic_panels_return_data(apps: MultiApp, skewed_load: Load) -> None:
    ids = [w.id for w in widgets() if w.row in NEW_ROWS]
    assert len(ids) == 12, ids
    hot, cold = apps.instance_ids
    pending = {(wid, ref) for wid in ids for ref in range(len(widget(wid).queries))}
    results: dict[tuple[str, int], dict[str, float]] = {}
    deadline = time.monotonic() + DEADLINE
    while pending and time.monotonic() < deadline:
        skewed_load.check()
        for key in sorted(pending):
            values = by_instance(apps, *key)
            if values:
                results[key] = values
        pending -= set(results)
        if pending:
            time.sleep(1)
    assert not pending, f"panel queries without data after {DEADLINE:g} s: {sorted(pending)}"
    print(f"\ncapacity and traffic panel queries with data: {len(results)}/{len(results)}")
    for wid in ("disk_days_until_full", "memory_days_until_limit", "cpu_days_until_saturation"):
        assert {hot, cold} <= set(results[(wid, 0)]), (wid, results[(wid, 0)])
        assert all(0 <= v <= 365 for v in results[(wid, 0)].values()), (wid, results[(wid, 0)])
    # the measured capacity is a real rate (the best 5 minutes of one instance within the SLO)
    capacity = results[("instance_load_vs_capacity", 1)]
    assert list(capacity) == [""] and 0 < capacity[""] < 1000, capacity
    assert {hot, cold} <= set(results[("instance_capacity_utilization", 0)])
    assert {hot, cold} <= set(results[("health_per_instance", 0)])
