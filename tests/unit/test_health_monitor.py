"""The monitor without servers: user checks, dependency map, endpoints, auth, gauges, singleton."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import sizewise_otel.health.monitor as monitor_module
from sizewise_otel.health import HealthMonitor, get_health_monitor, initialize_health_monitor
from sizewise_otel.health.monitor import default_capabilities, normalise_capabilities
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import ExportStats


class FakeTelemetry:
    """What the monitor needs from Telemetry: observe() and export_stats."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.export_stats = ExportStats()
        self.callbacks: dict[str, Any] = {}

    def observe(self, name: str, callback: Any) -> None:
        self.callbacks.setdefault(name, callback)


class FakeSystem:
    def __init__(self, cpu: float = 10.0, memory: float = 20.0, disk: float = 30.0) -> None:
        self.values = {"cpu": cpu, "memory": memory, "disk": disk}

    def cpu(self) -> list[tuple[float, dict[str, str]]]:
        return [(self.values["cpu"], {"sizewise.usage.source": "host"})]

    def memory(self) -> list[tuple[float, dict[str, str]]]:
        return [(self.values["memory"], {"sizewise.usage.source": "host"})]

    def disk(self) -> list[tuple[float, dict[str, str]]]:
        return [(self.values["disk"], {"system.filesystem.mountpoint": "data"})]


def make(system: FakeSystem | None = None, **settings: Any) -> HealthMonitor:
    s = load_settings(health_cache_ttl_seconds=0, health_check_timeout_seconds=0.5, **settings)
    return HealthMonitor(s, FakeTelemetry(s), system=system or FakeSystem())  # type: ignore[arg-type]


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_get_overall_health_seed_api_shape() -> None:
    health = await make().get_overall_health()
    assert health["overall_status"] == "healthy"
    assert health["summary"] == {"healthy": 5, "warning": 0, "critical": 0, "total": 5}
    assert {"cpu:utilization", "memory:utilization", "disk:utilization", "process:eventLoopLag",
            "telemetry:exportFailures"} == set(health["checks"])


@pytest.mark.parametrize(("cpu", "expected"), [(79.9, "healthy"), (80.0, "warning"), (95.0, "critical")])
async def test_system_thresholds_come_from_settings(cpu: float, expected: str) -> None:
    m = make(FakeSystem(cpu=cpu), cpu_warning_percent=80, cpu_critical_percent=95)
    entry = (await m.get_overall_health())["checks"]["cpu:utilization"][0]
    assert entry["health"] == expected and entry["observedValue"] == cpu
    assert entry["threshold"] == {"warning": 80, "critical": 95}
    assert ("advice" in entry) == (expected != "healthy")


async def test_saturated_cpu_warns_but_keeps_serving() -> None:
    # A busy instance still serves: /health must not answer 503 (a load balancer would pull it) while
    # memory, which can kill the process, still does.
    m = make(FakeSystem(cpu=100.0), cpu_warning_percent=100, cpu_critical_percent=100)
    app = FastAPI(telemetry={"metrics": False})
    app.include_router(m.router())
    async with client(app) as c:
        r = await c.get("/health")
    assert (r.status_code, r.json()["status"]) == (200, "warn")
    entry = (await m.get_overall_health())["checks"]["cpu:utilization"][0]
    assert (entry["health"], entry["critical"], entry["impact"]) == ("critical", False, "warning")
    m = make(FakeSystem(memory=99.0))
    app = FastAPI(telemetry={"metrics": False})
    app.include_router(m.router())
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 503


async def test_user_checks_sync_async_and_non_critical() -> None:
    m = make()

    async def queue_depth() -> dict[str, Any]:
        return {"status": "warn", "observed_value": 120, "observed_unit": "jobs", "message": "backlog"}

    m.add_check("queue", queue_depth, critical=True, measurement="depth")
    m.add_check("optional_feature", lambda: False, critical=False, advice="turn it back on")
    with pytest.raises(ValueError):
        m.add_check("queue", lambda: True)
    health = await m.get_overall_health()
    assert health["overall_status"] == "warning"  # the critical=False failure only degrades
    q = health["checks"]["queue:depth"][0]
    assert (q["health"], q["observedValue"], q["observedUnit"]) == ("warning", 120, "jobs")
    opt = health["checks"]["optional_feature:status"][0]
    assert (opt["health"], opt["impact"], opt["advice"]) == ("critical", "warning", "turn it back on")
    m.add_check("must", lambda: "fail", critical=True, advice="fix it")
    health = await m.get_overall_health()
    assert health["overall_status"] == "critical" and health["summary"]["critical"] == 1
    assert health["recommendations"][0]["check"] == "must"


def test_capabilities_default_and_custom() -> None:
    caps = default_capabilities(database=True, redis=True, http=["materials"])
    assert caps["calculate"] == {"requires": ["database"], "optional": ["redis"]}
    assert caps["cache"] == {"requires": ["redis"], "optional": []}
    assert caps["materials"] == {"requires": ["materials"], "optional": []}
    assert normalise_capabilities({"calculate": ["database"], "cache": "redis",
                                   "report": {"optional": ["pdf"]}}) == {
        "calculate": {"requires": ["database"], "optional": []},
        "cache": {"requires": ["redis"], "optional": []},
        "report": {"requires": [], "optional": ["pdf"]}}
    with pytest.raises(ValueError):
        normalise_capabilities({"x": {"needs": ["y"]}})


async def test_custom_capabilities_show_what_a_failure_affects() -> None:
    s = load_settings(health_cache_ttl_seconds=0)
    m = HealthMonitor(s, FakeTelemetry(s), system=FakeSystem(),  # type: ignore[arg-type]
                      capabilities={"calculate": ["pricing"]})
    m.add_check("pricing", lambda: "fail")
    health = await m.get_overall_health()
    assert health["dependencies"]["calculate"] == {"status": "unavailable", "requires": ["pricing"],
                                                   "optional": [], "impaired_by": ["pricing"]}
    assert health["checks"]["pricing:status"][0]["affects"] == ["calculate"]


async def test_telemetry_export_failures_warn() -> None:
    m = make(otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
    tel = m.telemetry
    entry = (await m.get_overall_health())["checks"]["telemetry:exportFailures"][0]
    assert entry["health"] == "healthy"
    tel.export_stats.failures["metrics"] = 3
    tel.export_stats.last_failure = time.time()
    entry = (await m.get_overall_health())["checks"]["telemetry:exportFailures"][0]
    assert (entry["health"], entry["impact"], entry["observedValue"]) == ("warning", "warning", 3)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in entry["advice"]


async def test_gauges_report_status_and_duration_per_check() -> None:
    m = make()
    m.add_check("down", lambda: "fail")
    await m.get_overall_health()
    points = m.telemetry.callbacks["sizewise.health.status"]()
    status = {(a["sizewise.health.check"], a["sizewise.health.state"]): v for v, a in points}
    # One series per state of each check: 1 for its current state, 0 for the others.
    assert len(status) == len(points) == 3 * len({check for check, _ in status})
    assert (status["down", "critical"], status["down", "warning"], status["down", "healthy"]) == (1.0, 0.0, 0.0)
    assert (status["cpu", "healthy"], status["cpu", "warning"], status["cpu", "critical"]) == (1.0, 0.0, 0.0)
    durations = m.telemetry.callbacks["sizewise.health.check.duration"]()
    assert all(v >= 0 for v, _ in durations) and {"sizewise.health.check": "down"} in [a for _, a in durations]


async def test_initialize_does_not_wait_and_shutdown_is_idempotent() -> None:
    m = make()
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()  # never set: an initialize() that waited for checks would not return

    m.add_check("slow", hangs)
    await asyncio.wait_for(m.initialize(), 10)
    await asyncio.wait_for(m.initialize(), 10)
    assert m.running and "slow" not in m.runner.results
    await m.shutdown()
    await m.shutdown()
    assert not m.running


async def test_background_refresh_fills_cache_and_history() -> None:
    s = load_settings(health_cache_ttl_seconds=1, health_check_timeout_seconds=0.5)
    m = HealthMonitor(s, FakeTelemetry(s), system=FakeSystem(), refresh_interval=0.1)  # type: ignore[arg-type]
    await m.initialize()
    try:
        def runs() -> int:
            return sum(b[4] for b in m.history.of("cpu").minutes.data)

        deadline = time.monotonic() + 10  # three refreshes take 0.2 s; a loaded machine may take longer
        while runs() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert runs() >= 3
        assert set(m.runner.results) == set(m.checks)
        history = m.get_history("cpu")
        assert history["checks"]["cpu"]["uptime"]["1h"] == 1.0
        assert history["checks"]["cpu"]["transitions"][0]["current"] == "healthy"
    finally:
        await m.shutdown()


async def test_endpoints_status_codes_and_content_type() -> None:
    m = make()
    app = FastAPI(telemetry={"metrics": False})  # not instrumented: keep it out of the shared registry
    app.include_router(m.router())
    async with client(app) as c:
        for path in ("/livez", "/readyz", "/health"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == "application/health+json"
        m.add_check("db", lambda: False, readiness=True)
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["failing"] == ["db"]
        assert (await c.get("/health")).status_code == 503
        assert (await c.get("/livez")).status_code == 200


async def test_health_details_only_for_viewers_and_audited(monkeypatch: pytest.MonkeyPatch) -> None:
    audits: list[tuple[Any, ...]] = []
    import sizewise_otel.health.api as api

    monkeypatch.setattr(api, "_audit", lambda p, req, route, result: audits.append((p.role, route, result)))
    m = make(sizewise_api_keys="viewer:vk-123,admin:ak-456")
    app = FastAPI(telemetry={"metrics": False})  # not instrumented: keep it out of the shared registry
    app.include_router(m.router())
    async with client(app) as c:
        anon = (await c.get("/health")).json()
        assert set(anon) == {"status", "overall_status", "time"}
        wrong = (await c.get("/health", headers={"authorization": "Bearer nope"})).json()
        assert "checks" not in wrong
        viewer = (await c.get("/health", headers={"authorization": "Bearer vk-123"})).json()
        assert "checks" in viewer and "summary" in viewer
        assert audits == [("viewer", "/health", 200)]
        assert (await c.get("/health/history")).status_code == 401
        r = await c.get("/health/history", params={"check": "cpu"},
                        headers={"authorization": "Bearer ak-456"})
        assert r.status_code == 200 and list(r.json()["checks"]) == ["cpu"]
        r = await c.get("/health/history", params={"check": "nope"},
                        headers={"authorization": "Bearer ak-456"})
        assert r.status_code == 404 and "cpu" in r.json()["checks"]
        assert (await c.get("/livez")).status_code == 200 and (await c.get("/readyz")).status_code == 200


def test_singleton_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_module, "_monitor", None)
    s = load_settings()
    tel = FakeTelemetry(s)
    first = initialize_health_monitor(s, tel)  # type: ignore[arg-type]
    assert initialize_health_monitor() is first and get_health_monitor() is first
    assert initialize_health_monitor(s, tel, engine=None) is first  # type: ignore[arg-type]
    other = initialize_health_monitor(s, tel, http_dependencies={"m": "http://127.0.0.1:9/livez"})  # type: ignore[arg-type]
    assert other is not first and get_health_monitor() is other
    assert "m" in other.checks


def test_materials_service_url_becomes_an_http_dependency() -> None:
    s = load_settings(materials_service_url="http://127.0.0.1:9/")
    m = HealthMonitor(s, FakeTelemetry(s), system=FakeSystem())  # type: ignore[arg-type]
    assert "materials" in m.checks and m.capabilities["materials"] == {"requires": ["materials"],
                                                                       "optional": []}
    explicit = HealthMonitor(s, FakeTelemetry(s), system=FakeSystem(), http_dependencies={})  # type: ignore[arg-type]
    assert "materials" not in explicit.checks
