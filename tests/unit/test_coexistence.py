"""Coexistence (issue 17 item 5): what a service already has is kept or cleanly handed over, nothing is
counted twice, and one ``coexistence`` log line says what was found. On both paths.

The scenarios run in fresh interpreters (tests/unit/coexist_scenarios.py): global providers, the contrib
instrumentor's and Sentry's patches are process-wide. Each scenario app serves ``ROUTE`` twice and
``ROUTE/boom`` (an unhandled exception, 500) once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.servers import ROOT, clean_env

TWICE_AND_ONE_ERROR = {"": 2, "/boom": 1}


def _expect(route: str) -> dict[str, int]:
    return {f"{route}{suffix}": n for suffix, n in TWICE_AND_ONE_ERROR.items()}


def _only(counts: dict[str, Any], route: str) -> dict[str, int]:
    return {k: int(v) for k, v in counts.items() if k == route or k.startswith(f"{route}/")}


@pytest.fixture(scope="module", params=["1", "0"], ids=["fastpath", "public"])
def runs(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Both scenario processes for one path, run side by side."""
    env = clean_env({"SIZEWISE_FASTPATH": request.param, "SIZEWISE_GC_FREEZE": "false"})
    procs = {kind: subprocess.Popen([sys.executable, "-m", "tests.unit.coexist_scenarios", kind], cwd=ROOT,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for kind in ("host", "bare")}
    results = {}
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        (line,) = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        results[kind] = json.loads(line.removeprefix("RESULT "))
    return results


def _one_line(scenario: dict[str, Any]) -> dict[str, str]:
    (line,) = scenario["logs"]  # exactly one coexistence line
    return line


def test_service_providers_kept_tracer_provider_used(runs: dict[str, dict[str, Any]]) -> None:
    host = runs["host"]
    assert host["adopted"] is True
    line = _one_line(host["plain"])
    expected = {"tracer_provider", "meter_provider"} | ({"fastapi_native_telemetry"} if host["native"] else set())
    assert set(line) == expected
    assert "added to it" in line["tracer_provider"] and "kept global" in line["meter_provider"]
    # One SERVER span a request, in the service's pipeline (its resource), and SizeWise's exporter added to it.
    assert _only(host["host_spans"], "/plain") == _expect("/plain")
    assert _only(host["our_spans"], "/plain") == _expect("/plain")
    assert host["span_service_names"] == ["host-service"]
    # Counted once on /metrics; the service's own MeterProvider got no second copy (FastAPI's native layer).
    assert _only(host["metrics"], "/plain") == _expect("/plain")
    assert host["host_reader"] == {}


def test_fastapi_instrumentor_into_other_providers_is_handed_over(runs: dict[str, dict[str, Any]]) -> None:
    host = runs["host"]
    line = _one_line(host["contrib"])
    assert line["fastapi_instrumentor"].startswith("handed over")
    assert _only(host["metrics"], "/contrib") == _expect("/contrib")
    assert _only(host["host_spans"], "/contrib") == _expect("/contrib")
    assert not any(k.startswith("/contrib") for k in host["host_reader"])
    # uninstrument() put the service's instrumentor back: it records into the service's providers again.
    after = host["after_uninstrument"]
    assert after["host_reader"] == {"/contrib": 1}
    assert after["host_spans"]["/contrib"] == 3


def test_fastapi_instrumentor_into_sizewise_providers_is_kept(runs: dict[str, dict[str, Any]]) -> None:
    bare = runs["bare"]
    line = _one_line(bare["contrib"])
    assert set(line) == {"fastapi_instrumentor"} and line["fastapi_instrumentor"].startswith("kept")
    assert _only(bare["metrics"], "/contrib") == _expect("/contrib")
    assert _only(bare["our_spans"], "/contrib") == _expect("/contrib")


def test_plain_app_logs_nothing(runs: dict[str, dict[str, Any]]) -> None:
    bare = runs["bare"]
    assert bare["plain"]["logs"] == []
    assert _only(bare["metrics"], "/plain") == _expect("/plain")
    assert _only(bare["our_spans"], "/plain") == _expect("/plain")


def test_native_fastapi_telemetry_with_its_own_providers_is_handed_over(runs: dict[str, dict[str, Any]]) -> None:
    bare = runs["bare"]
    if bare["native"]:
        line = _one_line(bare["native_app"])
        assert set(line) == {"fastapi_native_telemetry"}
        assert "own tracer/meter provider" in line["fastapi_native_telemetry"]
    else:  # a FastAPI without native telemetry: nothing to find
        assert bare["native_app"]["logs"] == []
    assert bare["native_spans"] == {} and bare["native_reader"] == {}
    assert _only(bare["metrics"], "/native") == _expect("/native")
    assert _only(bare["our_spans"], "/native") == _expect("/native")


def test_prometheus_fastapi_instrumentator_and_its_metrics_route_kept(runs: dict[str, dict[str, Any]]) -> None:
    pfi = runs["bare"]["pfi"]
    assert set(_one_line(pfi)) == {"prometheus_fastapi_instrumentator", "metrics_route"}
    assert pfi["metrics_routes"] == 1  # theirs; SizeWise added no second GET /metrics
    assert pfi["own_requests_total"] == 3.0  # their counter still counts, once a request
    # Their /metrics serves SizeWise's series too, each request counted once.
    assert _only(runs["bare"]["metrics"], "/pfi") == _expect("/pfi")
    assert _only(runs["bare"]["our_spans"], "/pfi") == _expect("/pfi")


def test_sentry_keeps_capturing(runs: dict[str, dict[str, Any]]) -> None:
    bare = runs["bare"]
    sentry = bare["sentry"]
    line = _one_line(sentry)
    assert set(line) == {"sentry"} and "fastapi" in line["sentry"]
    assert sentry["errors"] == ["RuntimeError"]  # the unhandled exception still reaches Sentry, once
    assert sentry["transactions"] >= 3
    assert _only(bare["metrics"], "/sentry") == _expect("/sentry")
    assert _only(bare["our_spans"], "/sentry") == _expect("/sentry")
