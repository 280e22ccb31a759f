"""Zero-code mode: ``opentelemetry-instrument uvicorn sizewise_otel.demo:app`` gives the same signals."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.apprunner import run_demo
from tests.integration.test_foundation import eventually

pytestmark = pytest.mark.integration


def test_opentelemetry_instrument_yields_the_same_signals() -> None:
    exe = shutil.which("opentelemetry-instrument")
    assert exe, "opentelemetry-instrument comes with opentelemetry-instrumentation"
    cmd = [exe, "uvicorn", "sizewise_otel.demo:app", "--host", "127.0.0.1", "--port", "{port}"]
    with run_demo(cmd=cmd) as app:
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for airflow in (400, 800, 800):
                r = client.post("/api/hvac/calculate", json={"calculation_type": "round_duct",
                                                             "airflow_cfm": airflow})
                assert r.status_code in (200, 201), r.text
            assert client.get("/no/such/page").status_code == 404

        def check() -> None:
            text = app.metrics_text()
            assert 'http_route="/api/hvac/calculate"' in text
            assert "sizewise_hvac_calculations_total" in text
            assert 'cache_result="hit"' in text
            assert "db_client_operation_duration_seconds_bucket" in text
            assert "sizewise_cpu_usage_percent" in text
            # instrumented exactly once: one series per route/status, from one scope
            lines = [ln for ln in text.splitlines() if ln.startswith("http_server_request_duration_seconds_count")
                     and 'http_route="/api/hvac/calculate"' in ln and 'status_code="201"' in ln]
            assert len(lines) == 1, lines
            assert lines[0].rstrip().endswith(" 2.0")

        eventually(check, timeout=20)
