"""Faults survived with nothing lost: Redis killed mid-traffic, PostgreSQL restarted, Prometheus
gone. Each against real servers; the demo runs as its own process."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from tests.apprunner import RunningApp, parse_samples, run_demo
from tests.integration.test_foundation import eventually
from tests.servers import Server, create_database, prometheus_server

pytestmark = pytest.mark.integration


def calc(client: httpx.Client, airflow: int) -> httpx.Response:
    return client.post("/api/hvac/calculate", json={"calculation_type": "round_duct", "airflow_cfm": airflow})


class Traffic:
    """Background calculations at a steady, bounded rate; records every status."""

    def __init__(self, url: str, rate: float = 25.0, limit: int = 3000) -> None:
        self.statuses: Counter[int] = Counter()
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, rate, limit), daemon=True)

    def _run(self, url: str, rate: float, limit: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(limit):
                if self._stop.is_set():
                    return
                t0 = time.monotonic()
                try:
                    self.statuses[calc(client, 100 + (i % 50) * 10).status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1
                self.slowest = max(self.slowest, time.monotonic() - t0)
                time.sleep(1 / rate)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def cache_results(app: RunningApp) -> Counter[str]:
    out: Counter[str] = Counter()
    for name, labels, value in app.samples():
        if name == "sizewise_cache_operations_total" and labels.get("sizewise_cache_backend") == "redis":
            out[labels["sizewise_cache_result"]] += value
    return out


def test_redis_killed_mid_traffic(redis_srv: Server) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{redis_srv.port}/2"}
    with run_demo(env) as app, Traffic(app.url) as traffic:
        eventually(lambda: _assert(cache_results(app)["hit"] > 0), timeout=20)
        redis_srv.stop()
        try:
            time.sleep(3)
            with httpx.Client(base_url=app.url, timeout=10) as client:
                answers = [calc(client, 5000 + i).status_code for i in range(20)]
                assert set(answers) <= {200, 201}, answers  # cache bypass: calculations still answer
                health = client.get("/health")
                assert health.status_code == 200 and health.json()["status"] == "warn"
                assert "redis" in health.text.lower()
            errors_during = cache_results(app)["error"]
            assert errors_during > 0
        finally:
            redis_srv.start()
        hits_before = cache_results(app)["hit"]
        # recovery: the breaker closes and Redis serves hits again; health returns to pass
        eventually(lambda: _assert(cache_results(app)["hit"] > hits_before), timeout=30)
        eventually(lambda: _assert(httpx.get(f"{app.url}/health", timeout=10).json()["status"] != "fail"))
    assert set(traffic.statuses) <= {200, 201}, traffic.statuses
    # A dead cache costs at most its 0.25 s socket timeout (no retries), then the breaker skips it. A
    # hang would reach the client's 10 s timeout (status 0 above); 5 s sits far above the configured
    # cost, so a loaded machine does not flake it, and still well below a hang.
    assert traffic.slowest < 5.0, traffic.slowest


def _assert(cond: bool) -> None:
    assert cond


def test_postgres_restarted(postgres: Server, tmp_path) -> None:
    db = create_database(postgres, "faults")
    env = {"DATABASE_URL": db, "ERROR_STORE_URL": f"sqlite:///{tmp_path / 'errors.db'}"}
    with run_demo(env) as app, httpx.Client(base_url=app.url, timeout=15) as client:
        assert calc(client, 1234).status_code == 201
        postgres.stop()
        unavailable = 0
        try:
            for i in range(12):
                assert_database_unavailable(calc(client, 2000 + i))
                unavailable += 1
            # README: /readyz fails while the database (a critical check) is down
            eventually(lambda: _assert(client.get("/readyz").status_code == 503), timeout=30)
        finally:
            postgres.start()

        def recovered() -> None:  # the pool recovers (pre-ping replaces dead connections)
            nonlocal unavailable
            resp = calc(client, 3333)
            if resp.status_code == 503:
                assert_database_unavailable(resp)
                unavailable += 1
            assert resp.status_code in (200, 201), resp.text

        eventually(recovered, timeout=30)
        assert calc(client, 4444).status_code == 201

        def one_group() -> None:
            groups = client.get("/errors/groups").json()
            items = groups["groups"] if isinstance(groups, dict) else groups
            db_groups = [g for g in items if "OperationalError" in str(g)]
            assert len(db_groups) == 1, db_groups
            # captured once each: one occurrence per 503 answered, and no second group for the status
            assert db_groups[0]["count"] == unavailable, (db_groups[0]["count"], unavailable)
            assert not [g for g in items if "HTTPServerError503" in str(g)], items

        eventually(one_group, timeout=20)


def assert_database_unavailable(resp: httpx.Response) -> None:
    """The demo's answer to a dead database (sizewise_otel/demo/service.py ``database_unavailable``)."""
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"detail": "database unavailable, retry shortly"}
    assert resp.headers["retry-after"] == "5"


def test_prometheus_down_goes_unnoticed(tmp_path) -> None:
    with run_demo() as app:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: sizewise\n"
            f"    static_configs: [{{targets: ['{app.url.removeprefix('http://')}']}}]\n")
        prom = prometheus_server(config).start()
        try:
            def scraped() -> None:
                result = httpx.get(f"{prom.url}/api/v1/query", params={"query": "up"}).json()["data"]["result"]
                assert result and result[0]["value"][1] == "1", result

            eventually(scraped, timeout=30)
        finally:
            prom.stop()
        before = calculations(app)
        with httpx.Client(base_url=app.url, timeout=10) as client:
            codes = [calc(client, 900 + i).status_code for i in range(30)]
            assert set(codes) <= {200, 201}
            health = client.get("/health").json()
            assert health["status"] in ("pass", "warn")
        # nothing lost with the scraper gone: the pull model keeps counting in-process, every request once
        assert calculations(app) - before == 30


def calculations(app: RunningApp) -> float:
    return sum(value for name, _, value in parse_samples(app.metrics_text())
               if name == "sizewise_hvac_calculations_total")
