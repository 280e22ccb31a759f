"""The spec's four switches (``*_ENABLED``) and its Quick Start entry point ``initialize_metrics_collector``.

Each switch turned off removes exactly its component: the handle's attribute is None and its routes
answer 404, while the others keep working. Metric registration is process-wide, so the
``METRICS_COLLECTION_ENABLED`` comparison runs each setting in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sizewise_otel import instrument
from sizewise_otel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {"error_tracking_enabled": ("tracker", "/errors/summary"),
          "health_monitoring_enabled": ("monitor", "/health"),
          "performance_dashboard_enabled": ("dashboard", "/dashboard/overview")}
HEADERS = {"Authorization": "Bearer viewer-key"}


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.mark.parametrize("switch", sorted(ROUTES))
def test_a_switch_off_removes_its_component_and_only_it(switch: str) -> None:
    app = _app()
    handle = instrument(app, settings=Settings(error_store_url="sqlite://", api_keys="viewer:viewer-key",
                                               **{switch: False}))
    try:
        with TestClient(app) as client:
            for other, (attr, path) in ROUTES.items():
                status = client.get(path, headers=HEADERS).status_code
                if other == switch:
                    assert getattr(handle, attr) is None
                    assert status == 404, (path, status)
                else:
                    assert getattr(handle, attr) is not None
                    assert status != 404, (path, status)
            assert client.get("/ping").json() == {"ok": True}
    finally:
        handle.uninstrument()


PROBE = """
import json, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sizewise_otel import instrument
from sizewise_otel.settings import Settings
app = FastAPI()
@app.get("/ping")
def ping():
    return {"ok": True}
instrument(app, settings=Settings(error_store_url="sqlite://", metrics_collection_enabled=sys.argv[1] == "on"))
with TestClient(app) as c:
    c.get("/ping")
    text = c.get("/metrics").text
names = sorted({ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and not ln.startswith("#")})
print("RESULT " + json.dumps(names))
"""


def _series_names(mode: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SIZEWISE_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    return set(json.loads(line.removeprefix("RESULT ")))


def test_metrics_collection_switch_drops_the_system_signals_not_the_request_ones() -> None:
    on, off = _series_names("on"), _series_names("off")
    system = {"sizewise_cpu_usage_percent", "sizewise_memory_usage_percent", "sizewise_error_rate_percent"}
    assert system <= on
    assert not system & off
    assert "http_server_request_duration_seconds_count" in on & off  # requests are still measured


def test_quick_start_metrics_collector_records_into_the_exposition() -> None:
    import sizewise_otel.MetricsCollector as mc

    mc._collector = None  # the spec's module-level singleton, fresh for this test
    collector = mc.initialize_metrics_collector(Settings(error_store_url="sqlite://"))
    assert mc.get_metrics_collector() is collector
    collector.record_calculation("toggle_probe", 0.25)
    text = collector.prometheus_text()
    counted = [ln for ln in text.splitlines()
               if ln.startswith("sizewise_hvac_calculations_total") and '"toggle_probe"' in ln]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 1.0
    assert any(ln.startswith("sizewise_hvac_calculation_duration_seconds_sum") and '"toggle_probe"' in ln
               and float(ln.rsplit(" ", 1)[1]) == pytest.approx(0.25) for ln in text.splitlines())
