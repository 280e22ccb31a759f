"""The Grafana panels, read as a user would, against real processes behind the real collector.

Two ``sizewise-otel demo`` processes push OTLP to the built collector; the pinned Prometheus scrapes
its exporter (tests/multiapp.py). The panel queries are taken from the checked-in dashboard JSON and
the ``$job`` variable is set to the value Grafana offers for the app (``label_values(target_info,
job)``), never ``.*``. Checked: the instance panels count 2 instances and 1 after a SIGKILL; the
error-rate panels show the service's true 5xx share when only one worker fails; every panel with an
``or vector(0)`` fallback has its underlying series after the load that creates it, and its value moves.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sizewise_otel.dashboard.expr import fallbacks
from sizewise_otel.dashboard.widgets import widget, widgets
from tests import servers, stack
from tests.multiapp import MultiApp

pytestmark = pytest.mark.integration

DASHBOARDS = stack.ROOT / "grafana" / "dashboards"
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval: >= 4 x the test's 1 s scrape interval
BROKEN = {  # worker 1 in the fallback test: its error store is down (plus a failing peer, below)
    "ERROR_STORE_URL": "postgresql+psycopg://sizewise@127.0.0.1:9/errors",
    "ERROR_QUEUE_SIZE": "10",
}
IMPORT = "/api/hvac/import"
GOOD_ROW, BAD_ROW = "round_duct,1200,0.08", "round_duct,n/a,0.1"  # 200 / the demo's legacy-bug 500


@pytest.fixture(scope="module")
def apps() -> Iterator[MultiApp]:
    # Resource checks that cannot fail on a busy test machine: "Failing checks" must move only
    # because of the dependency this test breaks.
    quiet = {f"{r}_{level}_PERCENT": "100" for r in ("CPU", "MEMORY", "DISK") for level in ("WARNING", "CRITICAL")}
    with MultiApp(2, env=quiet) as running:
        yield running


class _Unavailable(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def failing_peer() -> Iterator[str]:
    """A materials service that answers 503 to everything (its /livez too). A refused connection
    would not do: the httpx instrumentation records no client duration for a call that raised."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the dashboards as Grafana runs them ----------------------------------------------------

def board_panel(widget_id: str) -> tuple[dict, dict]:
    """(dashboard JSON, panel JSON) of a built-in widget, from the checked-in files."""
    w = widget(widget_id)
    board = json.loads((DASHBOARDS / f"{w.dashboard}.json").read_text())
    panel = next(p for p in board["panels"] if p.get("title") == w.title)
    return board, panel


def grafana_regex(value: str) -> str:
    """How Grafana's Prometheus data source escapes a multi-value variable's selected value."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\1", value)


def offered_jobs(apps: MultiApp, board: dict) -> list[str]:
    """The values the dashboard's $job variable offers: its label_values() query, through Prometheus."""
    var = next(v for v in board["templating"]["list"] if v["name"] == "job")
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
    assert match, var["query"]
    assert apps.prometheus is not None
    resp = httpx.get(f"{apps.prometheus.url}/api/v1/label/{match[2]}/values",
                     params={"match[]": match[1]}, timeout=10)
    return resp.json()["data"]


def panel_query(apps: MultiApp, widget_id: str, ref: int = 0, rate_interval: str = RATE_INTERVAL) -> str:
    """The panel's PromQL with $job set to the app's job as offered, $instance at All (its allValue)."""
    board, panel = board_panel(widget_id)
    assert apps.job in offered_jobs(apps, board), "the $job variable does not offer the app's job"
    instance = next(v for v in board["templating"]["list"] if v["name"] == "instance")
    return (panel["targets"][ref]["expr"].replace("$__rate_interval", rate_interval)
            .replace("$job", grafana_regex(apps.job)).replace("$instance", instance["allValue"]))


def panel_value(apps: MultiApp, widget_id: str, at: float | None = None, **kw: str) -> float | None:
    """A single-series panel's value; NaN (0/0: nothing happened in the window) reads as None."""
    value = apps.value(panel_query(apps, widget_id, **kw), at)
    return None if value is None or math.isnan(value) else value


def wait_until(what: str, predicate: Callable[[], bool], timeout: float,
               detail: Callable[[], object] = lambda: "") -> float:
    """Poll ``predicate`` until true; the seconds it took. Fails with ``what`` and ``detail()``."""
    start = time.monotonic()
    try:
        servers.wait_for(predicate, timeout, what)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout:g} s {detail()}")
    return time.monotonic() - start


# --- traffic ---------------------------------------------------------------------------------

def imports(url: str, good: int, bad: int) -> None:
    """``good`` 200s and ``bad`` 500s from the import route of one instance, interleaved."""
    rows = [GOOD_ROW] * good + [BAD_ROW] * bad
    random.Random(len(rows)).shuffle(rows)
    # A new connection per request: the demo's legacy-bug 500 closes a keep-alive connection.
    with httpx.Client(base_url=url, timeout=10, headers={"Connection": "close"}) as client:
        for row in rows:
            status = client.post(IMPORT, json={"csv": row}).status_code
            assert status == (200 if row == GOOD_ROW else 500), (row, status)


def calculations(url: str, n: int, seed: int, kind: str | None = None, invalid: bool = False) -> None:
    from sizewise_otel.demo import hvac

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10, headers={"Connection": "close"}) as client:
        for _ in range(n):
            body = hvac.invalid_sample(rng) if invalid else hvac.sample_request(rng, kind)
            client.post("/api/hvac/calculate", json=body)


def regress(url: str) -> None:
    """Resolve every error group of one instance, then fail again: each round counts a regressed
    group in sizewise_error_groups_new_total (a first-ever group would not do twice: the series is
    born at 1, and increase() cannot see the step from nothing to its first sample)."""
    with httpx.Client(base_url=url, timeout=10, headers={"Connection": "close"}) as client:
        for group in client.get("/errors/groups").json()["groups"]:
            resp = client.patch(f"/errors/groups/{group['group_id']}", json={"status": "resolved"})
            assert resp.status_code == 200, resp.text
    imports(url, good=0, bad=1)


def import_counts(apps: MultiApp) -> float:
    return apps.value(f'sum(http_server_request_duration_seconds_count{{job="{apps.job}", '
                      f'http_route="{IMPORT}"}})') or 0.0


def settled_import_counts(apps: MultiApp) -> float:
    """The import count once earlier traffic's last exports have arrived (unchanged for 3 s)."""
    last: list[float] = [-1.0]

    def settled() -> bool:
        now = import_counts(apps)
        same, last[0] = now == last[0], now
        time.sleep(3)
        return same

    wait_until("earlier requests settled in Prometheus", settled, 60)
    return last[0]


# --- 1. no vacuous panel -----------------------------------------------------------------------

def fallback_widgets() -> dict[str, list[str]]:
    """Widget id -> PromQL of each part behind an ``or vector(0)`` (unsubstituted)."""
    found: dict[str, list[str]] = {}
    for w in widgets():
        parts = [p.promql() for q in w.queries for p in fallbacks(q.expr)]
        if parts:
            found[w.id] = parts
    return found


# The load of test_fallback_panels creates each of these parts (worker 1 runs with BROKEN):
FALLBACK_LOAD = {
    "http_error_rate": "500s from the import route",
    "error_rate_percent": "500s from the import route",
    "cache_hit_ratio": "the same calculation twice on one worker",
    "hvac_success_ratio": "valid calculations after invalid ones",
    "upstream_error_rate": "pressure-drop calculations on the worker whose materials service fails",
    "new_error_groups": "a 500 regressing a resolved group on a worker with a working error store",
    "errors_dropped": "500s on the worker whose error store is down and whose queue holds 10",
    "errors_total_rate": "500s from the import route",
}


def test_fallback_panels_have_their_series_and_move(apps: MultiApp, failing_peer: str) -> None:
    found = fallback_widgets()
    print("\npanels with an `or vector(0)` fallback: " + ", ".join(sorted(found)))
    assert set(found) == set(FALLBACK_LOAD), "a fallback panel without a load creating its series"
    wait_until("both instances in target_info",
               lambda: panel_value(apps, "targets_up") == 2, 60)

    # Before: good requests, invalid calculations and one 500 (its error group exists), then a
    # quiet rate interval; every process healthy.
    base = settled_import_counts(apps)
    imports(apps.url(0), good=5, bad=1)
    imports(apps.url(1), good=5, bad=0)
    calculations(apps.url(0), 5, seed=1, invalid=True)
    wait_until("the first requests in Prometheus", lambda: import_counts(apps) == base + 11, 30)
    time.sleep(int(RATE_INTERVAL[:-1]) + 2)
    before = {wid: panel_value(apps, wid) for wid in found}
    wait_until("Failing checks reading 0 while every process is healthy",
               lambda: panel_value(apps, "failing_checks") == 0, 30)

    # The failures: worker 1's materials service answers 503 and its error store is down.
    apps.restart(1, env={**BROKEN, "MATERIALS_SERVICE_URL": failing_peer})
    stop = threading.Event()

    errors: list[BaseException] = []

    def load() -> None:
        try:
            drive()
        except BaseException as exc:
            errors.append(exc)
            raise

    def drive() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            calculations(apps.url(0), 2, seed=7)  # the same request twice: a miss, then a hit
            calculations(apps.url(0), 2, seed=seed)
            calculations(apps.url(1), 2, seed=seed, kind="pressure_drop")
            imports(apps.url(1), good=1, bad=4)
            regress(apps.url(0))
            time.sleep(0.2)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    seen: dict[str, float] = {}
    parts_seen: set[tuple[str, str]] = set()

    def all_moved() -> bool:
        if not worker.is_alive():
            raise RuntimeError(f"the load thread died: {errors!r}")  # wait_for gives up at once on RuntimeError
        for wid, parts in found.items():
            value = panel_value(apps, wid)
            if value is not None:
                seen[wid] = max(seen.get(wid, 0.0), value)
            for part in parts:
                promql = part.replace("$__rate_interval", RATE_INTERVAL).replace(
                    "$job", grafana_regex(apps.job)).replace("$instance", ".+")
                if apps.query(promql):
                    parts_seen.add((wid, part))
        return all(seen.get(wid, 0) > 0 for wid in found) and len(parts_seen) == sum(map(len, found.values()))

    try:
        took = wait_until("every fallback panel above 0 and its series present", all_moved, 90,
                          lambda: {"peak": seen, "parts seen": sorted(parts_seen)})
        # Not a fallback panel (a `> bool` sum): the failing materials check of worker 1 counts.
        wait_until("Failing checks reading 1 or more", lambda: (panel_value(apps, "failing_checks") or 0) >= 1, 30)
    finally:
        stop.set()
        worker.join(30)
    print(f"fallback panels moved within {took:.1f} s; before {before}; peak {seen}")
    for wid in found:
        assert seen[wid] > 0 and seen[wid] != before[wid], (wid, before[wid], seen[wid])


# --- 2. the true error share across workers ------------------------------------------------------

def test_error_rate_panels_show_the_service_share_when_one_worker_fails(apps: MultiApp) -> None:
    wait_until("both instances in target_info", lambda: panel_value(apps, "targets_up") == 2, 60)
    # Warm-up: every series of the measured window exists (with a few counts) before it starts.
    base = settled_import_counts(apps)
    imports(apps.url(0), good=5, bad=0)
    imports(apps.url(1), good=5, bad=5)
    wait_until("the warm-up in Prometheus", lambda: import_counts(apps) == base + 15, 30)
    time.sleep(2)  # two more scrapes of the settled counters: the window starts on a flat baseline
    t_mark = time.time()
    # A flat stretch first: Prometheus limits the extrapolation of a series whose first sample is
    # small next to its increase; a longer window keeps every series extrapolated alike.
    time.sleep(5)

    # Unequal traffic, so neither the mean nor the max of per-process percentages is right:
    # worker 0 serves 60 and fails none, worker 1 serves 40 and fails half: 20 of 100 = 20 %
    # (the mean of the per-worker shares would say 25 %, their max 50 %).
    imports(apps.url(0), good=60, bad=0)
    imports(apps.url(1), good=20, bad=20)
    wait_until("the measured requests in Prometheus", lambda: import_counts(apps) == base + 115, 30)
    time.sleep(2)
    t_end = time.time()
    window = f"{math.ceil(t_end - t_mark)}s"
    for wid in ("error_rate_percent", "http_error_rate"):
        # The route's share: the panels are service-wide, and only the import route had traffic
        # in this window (no load runs meanwhile).
        value = panel_value(apps, wid, at=t_end, rate_interval=window)
        print(f"{wid} over {window}: {value}")
        assert value is not None and abs(value - 20.0) <= 2.0, (wid, value)
    per_process = apps.query(f'sizewise_error_rate_percent{{job="{apps.job}"}}', at=t_end)
    print("per-process sizewise_error_rate_percent (not used by any panel): "
          + str({r["metric"]["instance"]: r["value"][1] for r in per_process}))


# --- 3. instance panels count instances -------------------------------------------------------------

def instance_panels(apps: MultiApp) -> dict[str, float | None]:
    by_job = {r["metric"].get("job"): float(r["value"][1])
              for r in apps.query(panel_query(apps, "service_up"))}
    assert set(by_job) <= {apps.job}, by_job
    return {"targets_up": panel_value(apps, "targets_up"), "service_up": by_job.get(apps.job)}


def test_instance_panels_read_2_then_1_after_a_kill(apps: MultiApp) -> None:
    wait_until("instance panels reading 2",
               lambda: instance_panels(apps) == {"targets_up": 2, "service_up": 2}, 60)
    # target_info behind the collector: job from service.namespace/name, instance = service.instance.id
    info = apps.query(f'target_info{{job="{apps.job}"}}')
    print("\ntarget_info labels: " + ", ".join(sorted(info[0]["metric"])))
    assert {r["metric"]["instance"] for r in info} == set(apps.instance_ids)
    assert "service_instance_id" not in info[0]["metric"]  # it became `instance`
    apps.kill(1)
    took = wait_until("instance panels reading 1 after the kill",
                      lambda: instance_panels(apps) == {"targets_up": 1, "service_up": 1}, 120)
    print(f"instance panels read 1 after {took:.1f} s (collector metric_expiration "
          f"{apps.metric_expiration}, 1 s scrape)")
    remaining = {r["metric"]["instance"] for r in apps.query(f'target_info{{job="{apps.job}"}}')}
    assert remaining == {apps.instance_ids[0]}

    apps.restart(1)
    wait_until("instance panels reading 2 after the restart",
               lambda: instance_panels(apps) == {"targets_up": 2, "service_up": 2}, 60)
