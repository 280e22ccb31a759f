"""The dashboard service and its HTTP API, embedded mode on a private registry, PromQL mode on a fake
Prometheus: values, series, 404/422, auth, a user's widget, the spec's Quick Start calls."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge

from sizewise_otel.dashboard.expr import m, max_
from sizewise_otel.dashboard.promql import PrometheusSource, substitute
from sizewise_otel.dashboard.service import PerformanceDashboard
from sizewise_otel.dashboard.widgets import register_widget, unregister_widget, widgets
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import ExportStats
from sizewise_otel.web.auth import KeyRing


class FakeTelemetry:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.export_stats = ExportStats()

    def observe(self, name: str, callback: Any) -> None:
        pass


class FakeMonitor:
    async def get_overall_health(self) -> dict[str, Any]:
        return {"overall_status": "healthy", "summary": {"healthy": 3, "warning": 0, "critical": 0}}


def make_registry() -> tuple[CollectorRegistry, dict[str, Gauge]]:
    reg = CollectorRegistry()
    g = {
        "cpu": Gauge("sizewise_cpu_usage_percent", "cpu", ["sizewise_usage_source"], registry=reg),
        "mem": Gauge("sizewise_memory_usage_percent", "mem", ["sizewise_usage_source"], registry=reg),
        "req": Gauge("http_server_request_duration_seconds_count", "n",
                     ["http_route", "http_response_status_code"], registry=reg),
        "sessions": Gauge("sizewise_sessions_active", "s", registry=reg),
    }
    g["cpu"].labels("host").set(42.0)
    g["mem"].labels("host").set(61.5)
    g["sessions"].set(7)
    return reg, g


def make(**settings: Any) -> tuple[PerformanceDashboard, dict[str, Gauge]]:
    s = load_settings(**settings)
    reg, gauges = make_registry()
    dash = PerformanceDashboard(s, FakeTelemetry(s), monitor=FakeMonitor(), registry=reg,  # type: ignore[arg-type]
                                sample_interval=3600)
    return dash, gauges


def app_for(dash: PerformanceDashboard) -> FastAPI:
    app = FastAPI(telemetry={"metrics": False})  # not instrumented: keep it out of the shared registry
    app.state.sizewise_keyring = KeyRing(dash.settings)
    app.include_router(dash.router())
    return app


def client(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers)


async def test_quick_start_calls_work_in_embedded_mode() -> None:
    dash, gauges = make()
    now = 1_800_000_000.0
    gauges["req"].labels("/api/hvac/calculate", "200").set(0)
    gauges["req"].labels("/api/hvac/calculate", "500").set(0)
    dash._sample_sync(now - 10)
    gauges["req"].labels("/api/hvac/calculate", "200").set(100)
    gauges["req"].labels("/api/hvac/calculate", "500").set(5)
    dash._sample_sync(now)
    data = await dash.get_widget_data("system_cpu")
    assert data["value"] == 42.0 and data["unit"] == "percent" and data["status"] == "ok"
    assert data["source"] == "embedded"
    assert data["current"] == [{"labels": {"sizewise_usage_source": "host"}, "value": 42.0}]
    assert "sizewise_cpu_usage_percent" in data["promql"][0]
    overview = await dash.get_dashboard_overview()
    assert overview["cpu_percent"] == 42.0
    assert overview["memory_percent"] == 61.5
    assert overview["active_sessions"] == 7.0
    assert overview["request_rate"] == pytest.approx(10.5)
    assert overview["error_rate_percent"] == pytest.approx(100 * 5 / 105)
    assert overview["status"]["error_rate_percent"] == "warning"
    assert overview["health"]["overall_status"] == "healthy"
    assert set(overview["bottlenecks"]) == {"slowest_routes", "slowest_db_operations", "lowest_cache_hit_ratio"}
    assert len(overview["dashboards"]) == 5
    assert overview["history"]["memory_bound_bytes"] <= 6 * 1024 * 1024
    json.dumps(overview)  # JSON-serialisable as is


async def test_widget_data_without_initialize_samples_on_demand() -> None:
    dash, _ = make()
    data = await dash.get_widget_data("system_memory")
    assert data["value"] == 61.5
    assert data["series"] and data["series"][0]["points"][-1][1] == 61.5


async def test_api_routes_404_422_and_series() -> None:
    dash, _ = make()
    await dash.initialize()
    try:
        async with client(app_for(dash)) as c:
            r = await c.get("/dashboard/widget/system_cpu")
            assert r.status_code == 200 and r.json()["value"] == 42.0
            r = await c.get("/dashboard/widget/system_cpu?range=24h")
            assert r.status_code == 200 and r.json()["range"] == "24h"
            r = await c.get("/dashboard/widget/nope")
            assert r.status_code == 404 and "nope" in r.json()["detail"]
            assert (await c.get("/dashboard/widget/system_cpu?range=2d")).status_code == 422
            for name in ("sizewise.cpu.usage", "sizewise_cpu_usage_percent"):
                r = await c.get(f"/dashboard/metrics/{name}?range=1h")
                assert r.status_code == 200
                body = r.json()
                assert body["metric"] == "sizewise.cpu.usage" and body["series"][0]["points"]
            assert (await c.get("/dashboard/metrics/nope")).status_code == 404
            assert (await c.get("/dashboard/metrics/sizewise.cpu.usage?range=1y")).status_code == 422
            overview = (await c.get("/dashboard/overview")).json()
            assert overview["cpu_percent"] == 42.0
            listed = (await c.get("/dashboard/widgets")).json()["widgets"]
            assert {w["id"] for w in listed} == {w.id for w in widgets()}
            page = await c.get("/dashboard")
            assert page.status_code == 200 and "dashboard.js" in page.text
            js = await c.get("/dashboard/static/dashboard.js")
            assert js.status_code == 200 and "drawChart" in js.text
            assert (await c.get("/dashboard/static/../api.py")).status_code == 404
    finally:
        await dash.shutdown()


async def test_viewer_key_required_when_keys_configured() -> None:
    dash, _ = make(sizewise_api_keys="viewer:v-key,admin:a-key")
    app = app_for(dash)
    async with client(app) as c:
        assert (await c.get("/dashboard/overview")).status_code == 401
        assert (await c.get("/dashboard/widget/system_cpu")).status_code == 401
        assert (await c.get("/dashboard")).status_code == 200  # the data-free shell
    async with client(app, "wrong") as c:
        assert (await c.get("/dashboard/overview")).status_code == 401
    for key in ("v-key", "a-key"):
        async with client(app, key) as c:
            assert (await c.get("/dashboard/widget/system_cpu")).status_code == 200


async def test_user_widget_in_api() -> None:
    register_widget("test_sessions_max", "Sessions (max)", "Peak sessions.", unit="short",
                    dashboard="hvac-calculations", row="Custom", panel="stat",
                    expr=max_(m("sizewise_sessions_active")))
    try:
        dash, _ = make()
        data = await dash.get_widget_data("test_sessions_max")
        assert data["value"] == 7.0 and data["panel"] == "stat"
    finally:
        unregister_widget("test_sessions_max")


def fake_prometheus(seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        seen.append(query)
        if request.url.path == "/api/v1/query":
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"sizewise_usage_source": "host", "instance": "a:1"}, "value": [1.0, "12.5"]}]}})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"sizewise_usage_source": "host"}, "values": [[1.0, "10"], [2.0, "12.5"]]}]}})

    return httpx.MockTransport(handler)


async def test_prometheus_mode_runs_the_widget_promql() -> None:
    dash, _ = make(prometheus_url="http://prometheus.invalid:9090")
    seen: list[str] = []
    dash.prometheus = PrometheusSource("http://prometheus.invalid:9090", transport=fake_prometheus(seen))
    await dash.initialize()  # no sampler in Prometheus mode
    assert dash._task is None
    data = await dash.get_widget_data("system_cpu")
    assert data["source"] == "prometheus" and data["value"] == 12.5
    assert data["series"][0]["points"] == [[1.0, 10.0], [2.0, 12.5]]
    assert all("$" not in q for q in seen)
    assert 'job=~".+"' in seen[0]
    history = await dash.get_metric_history("sizewise.hvac.calculations", "7d")
    assert history["step_seconds"] == 900.0 and history["source"] == "prometheus"
    await dash.shutdown()


async def test_prometheus_unreachable_is_reported_not_raised() -> None:
    dash, _ = make()

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    dash.prometheus = PrometheusSource("http://127.0.0.1:9", transport=httpx.MockTransport(down))
    data = await dash.get_widget_data("system_cpu")
    assert data["value"] is None
    overview = await dash.get_dashboard_overview()
    assert overview["cpu_percent"] is None


def test_substitute() -> None:
    text = 'rate(x{job=~"$job", instance=~"$instance"}[$__rate_interval])'
    assert substitute(text, rate_interval="15s", job="a", instance="b") == 'rate(x{job=~"a", instance=~"b"}[15s])'
