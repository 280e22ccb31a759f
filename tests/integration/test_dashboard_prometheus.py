"""Every panel proven against a real Prometheus scraping the demo under load.

The demo (``sizewise-otel demo --load``) runs on SQLite and Redis (the session's server); Prometheus
scrapes its /metrics every second. Then every query of the checked-in dashboards runs through
Prometheus' HTTP API with the variables substituted as Grafana would, and must return data; the
instrumentation names the panels rely on are proven to exist; and the widget API answers through
``PROMETHEUS_URL``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sizewise_otel.dashboard.grafana import panel_queries
from sizewise_otel.dashboard.promql import substitute
from sizewise_otel.dashboard.widgets import INSTRUMENTATION_METRICS, widgets
from tests.apprunner import RunningApp, run_demo
from tests.servers import Server, prometheus_server, tempdir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = "sizewise-demo"
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a 1 s scrape is max(4 x scrape, step)


@pytest.fixture(scope="module")
def demo(redis_srv: Server) -> Iterator[RunningApp]:
    # Redis behind the cache: the Redis INFO panels (Microservices Health) read its server.
    with run_demo(env={"REDIS_URL": f"redis://127.0.0.1:{redis_srv.port}/0"},
                  args=["--load", "--load-rate", "60"]) as app:
        yield app


@pytest.fixture(scope="module")
def prom(demo: RunningApp) -> Iterator[Server]:
    workdir = tempdir("dash-prom-cfg")
    config = workdir / "prometheus.yml"
    target = demo.url.removeprefix("http://")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        # The repo's rules: capacity and traffic panels read recorded series, as in the real stack.
        f"rule_files: ['{ROOT / 'prometheus' / 'rules'}/*.yml']\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n")
    srv = prometheus_server(config)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def query(prom: Server, expr: str) -> list[dict]:
    r = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def wait_for_traffic(prom: Server, timeout: float = 90.0) -> None:
    """Bounded: the load has produced calculations, errors and 5xx, scraped for a few seconds."""
    wanted = [
        f'count_over_time(up{{job="{JOB}"}}[1m]) >= 8',
        'sizewise_hvac_calculations_total',
        'sizewise_errors_total',
        'http_server_request_duration_seconds_count{http_response_status_code=~"5.."}',
        'http_client_request_duration_seconds_count',
        'sizewise_health_status',
        # Redis INFO is read once per 30 s tier: until a read after the first lookups, hits/(hits+misses)
        # is 0/0 (NaN, no value), so wait for a read that saw lookups.
        'sum(sizewise_cache_redis_keyspace_lookups_total) > 0',
    ]
    deadline = time.monotonic() + timeout
    missing = wanted
    while time.monotonic() < deadline:
        missing = [q for q in wanted if not query(prom, q)]
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"no data after {timeout}s for: {missing}")


def board_queries() -> list[tuple[str, str, str, str]]:
    out = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for title, ref, expr in panel_queries(board):
            out.append((path.stem, title, ref, expr))
    return out


PANEL_DEADLINE = 60.0  # a rate needs two scrapes in its window: seconds, more on a loaded machine


def test_every_panel_returns_data(prom: Server) -> None:
    wait_for_traffic(prom)
    queries = board_queries()
    assert len(queries) >= 40
    # Every (panel query, variable choice) is asked until it returns data; those that never did by
    # the deadline are reported together.
    pending = {(board, title, ref, job, substitute(expr, rate_interval=RATE_INTERVAL, job=job, instance=".+"))
               for board, title, ref, expr in queries for job in (".+", JOB)}
    deadline = time.monotonic() + PANEL_DEADLINE
    while pending:
        pending = {q for q in pending if not query(prom, q[-1])}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    empty = sorted(f"{board}: {title} [{ref}] job={job}: {promql}" for board, title, ref, job, promql in pending)
    print(f"\npanels-with-data {len(queries) - len({q[:3] for q in pending})}/{len(queries)}")
    assert not empty, f"panel queries without data after {PANEL_DEADLINE:g} s:\n" + "\n".join(empty)


def test_dashboard_variables_resolve(prom: Server) -> None:
    wait_for_traffic(prom)
    r = httpx.get(f"{prom.url}/api/v1/label/job/values", params={"match[]": "target_info"}, timeout=10)
    assert JOB in r.json()["data"]
    r = httpx.get(f"{prom.url}/api/v1/label/instance/values",
                  params={"match[]": f'target_info{{job=~"{JOB}"}}'}, timeout=10)
    assert r.json()["data"], "instance variable would be empty"


def test_instrumentation_allow_list_is_real(prom: Server) -> None:
    """The non-catalog names the panels use exist, with the labels the allow-list claims."""
    wait_for_traffic(prom)
    for name, labels in INSTRUMENTATION_METRICS.items():
        result = query(prom, f'{name}{{job="{JOB}"}}')
        assert result, f"{name} not exported"
        for label in labels:
            assert any(label in r["metric"] for r in result), f"{name} has no label {label}"


async def test_widgets_answer_through_prometheus_url(prom: Server) -> None:
    from sizewise_otel.dashboard.service import PerformanceDashboard
    from sizewise_otel.settings import load_settings

    wait_for_traffic(prom)
    settings = load_settings(prometheus_url=prom.url)
    dash = PerformanceDashboard(settings, object(), sample_interval=3600)  # type: ignore[arg-type]
    dash.prometheus.rate_interval = RATE_INTERVAL  # type: ignore[union-attr]
    try:
        await dash.initialize()
        data = await dash.get_widget_data("system_cpu")
        assert data["source"] == "prometheus"
        assert data["value"] is not None and data["series"] and data["series"][0]["points"]
        values = {}
        for w in widgets():
            values[w.id] = (await dash.get_widget_data(w.id))["value"]
        missing = [k for k, v in values.items() if v is None]
        assert not missing, f"widgets without a value through PROMETHEUS_URL: {missing}"
        overview = await dash.get_dashboard_overview()
        assert overview["source"] == "prometheus"
        for key in ("request_rate", "cpu_percent", "memory_percent", "calculations_per_minute",
                    "latency_p95_seconds", "cache_hit_ratio_percent", "active_sessions"):
            assert overview[key] is not None, key
        assert overview["bottlenecks"]["slowest_routes"]
        history = await dash.get_metric_history("sizewise_hvac_calculations_total", "1h")
        assert history["series"] and history["series"][0]["points"]
    finally:
        await dash.shutdown()


def test_demo_serves_the_api_in_embedded_mode(demo: RunningApp) -> None:
    deadline = time.monotonic() + 30
    while True:
        overview = httpx.get(f"{demo.url}/dashboard/overview", timeout=10).json()
        if overview["request_rate"] is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert overview["source"] == "embedded"
    assert overview["request_rate"] and overview["calculations_per_minute"]
    r = httpx.get(f"{demo.url}/dashboard/widget/system_cpu", timeout=10)
    assert r.status_code == 200 and r.json()["value"] is not None
    assert httpx.get(f"{demo.url}/dashboard/widget/nope", timeout=10).status_code == 404
    r = httpx.get(f"{demo.url}/dashboard/metrics/sizewise.hvac.calculations?range=24h", timeout=10)
    assert r.status_code == 200 and r.json()["series"]
    assert httpx.get(f"{demo.url}/dashboard/metrics/x?range=1h", timeout=10).status_code == 404
    assert httpx.get(f"{demo.url}/dashboard/metrics/sizewise.cpu.usage?range=9h",
                     timeout=10).status_code == 422


def test_demo_with_prometheus_url_answers_from_prometheus(prom: Server) -> None:
    """A second demo with PROMETHEUS_URL: its /dashboard API answers from Prometheus' data."""
    wait_for_traffic(prom)
    with run_demo(env={"PROMETHEUS_URL": prom.url}) as app:
        data = httpx.get(f"{app.url}/dashboard/widget/hvac_calculations_per_minute", timeout=20).json()
        assert data["source"] == "prometheus"
        assert data["value"] and data["value"] > 0  # the first demo's load, seen through Prometheus
        assert data["series"] and data["series"][0]["points"]
        overview = httpx.get(f"{app.url}/dashboard/overview", timeout=30).json()
        assert overview["source"] == "prometheus" and overview["request_rate"]
        r = httpx.get(f"{app.url}/dashboard/metrics/sizewise.cpu.usage?range=1h", timeout=20)
        assert r.status_code == 200 and r.json()["source"] == "prometheus" and r.json()["series"]
