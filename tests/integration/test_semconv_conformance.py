"""Semantic-conventions conformance (issue 19): every name the demo emits, checked against the
installed ``opentelemetry-semantic-conventions`` package.

The demo runs on real PostgreSQL and Redis with its materials service (the mesh call), under its own
load generator plus the monitoring endpoints, once on each instrumentation path (fast and public).
What the SDK holds (an in-memory reader: OTel names, units, kinds, attribute keys, buckets; what
OTLP carries), every span and span-event attribute key, the resource's keys and the ``/metrics``
families are checked by tests/semconv_check.py. Every finding must be in tests/semconv_tables.py
(DEVIATIONS or NOT_YET_CONFORMING) and every entry there must still be found: new names fail, and
fixed names must leave the tables, which docs/semconv.md mirrors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import semconv_tables as tables
from tests.semconv_check import Finding, Findings, check, merge, reconcile
from tests.semconv_registry import registry
from tests.servers import ROOT, Server, clean_env, create_database, need
from tests.tools import built_tool

pytestmark = pytest.mark.integration

LOAD_SECONDS = "4"
MODES = {"fast": "1", "public": "0"}  # SIZEWISE_FASTPATH per run
# What a run must have emitted, or the check would pass on too little.
REQUIRED_METRICS = {
    "http.server.request.duration", "http.server.active_requests", "http.client.request.duration",
    "db.client.operation.duration", "sizewise.cache.operations", "sizewise.cache.operation.duration",
    "sizewise.hvac.calculations", "sizewise.hvac.calculation.duration", "sizewise.errors",
    "sizewise.health.status", "sizewise.cpu.usage", "sizewise.error.rate", "system.cpu.utilization",
    "process.memory.usage",
}
REQUIRED_SPAN_SCOPES = {"opentelemetry.instrumentation.fastapi", "opentelemetry.instrumentation.httpx",
                        "opentelemetry.instrumentation.sqlalchemy", "opentelemetry.instrumentation.redis"}
HOW_TO_LIST = ("list each in tests/semconv_tables.py (NOT_YET_CONFORMING with its issue-19 bullet, or "
               "DEVIATIONS with why), then run `python -m tests.semconv_tables` to update docs/semconv.md")


def _run(postgres: Server, redis_srv: Server, mode: str) -> dict[str, Any]:
    import redis

    client = redis.Redis(port=redis_srv.port)
    client.flushall()
    client.close()
    env = clean_env({"DATABASE_URL": create_database(postgres, f"semconv_{mode}"),
                     "REDIS_URL": f"redis://127.0.0.1:{redis_srv.port}/0", "ERROR_STORE_URL": "sqlite://",
                     "OTEL_TRACES_SAMPLER": "always_on", "SIZEWISE_FASTPATH": MODES[mode]})
    proc = subprocess.run([sys.executable, "-m", "tests.integration.semconv_conformance_app", LOAD_SECONDS],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    found = [line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and found, f"{mode} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(found[0])
    result["families"] = [f.name for f in text_string_to_metric_families(result["metrics_text"])]
    return result


@pytest.fixture(scope="module")
def runs(postgres: Server, redis_srv: Server) -> dict[str, dict[str, Any]]:
    return {mode: _run(postgres, redis_srv, mode) for mode in MODES}


@pytest.fixture(scope="module")
def findings(runs: dict[str, dict[str, Any]]) -> Findings:
    reg = registry()
    return merge(*(check(reg, run, tables.ADVISED_BUCKETS, run["families"], mode) for mode, run in runs.items()))


def test_runs_cover_every_kind_of_traffic(runs: dict[str, dict[str, Any]]) -> None:
    for mode, run in runs.items():
        assert run["fastpath"] is (mode == "fast"), (mode, run["fastpath"])
        assert run["load"], mode
        assert all(got == expected for got, expected in run["fixed"]), (mode, run["fixed"])
        assert all(code == (404 if path.endswith("no-such-id") else 200) for path, code in run["answered"].items()), \
            (mode, run["answered"], run["health_failed"])
        missing = REQUIRED_METRICS - {m["name"] for m in run["metrics"]}
        assert not missing, (mode, sorted(missing))
        missing = REQUIRED_SPAN_SCOPES - {s["scope"] for s in run["spans"]}
        assert not missing, (mode, sorted(missing))
        assert any(e["name"] == "exception" for s in run["spans"] for e in s["events"]), mode
        assert "target_info" in run["families"] and "http_server_request_duration_seconds" in run["families"]


def _reconcile(findings: Findings, runs: dict[str, dict[str, Any]]) -> tuple[dict[str, Finding], list[str]]:
    emitted = {m["name"] for run in runs.values() for m in run["metrics"]}
    return reconcile(findings, [*tables.DEVIATIONS, *tables.NOT_YET_CONFORMING], tables.ENVIRONMENT_DEPENDENT,
                     emitted)


def test_every_emitted_name_conforms_or_is_listed(findings: Findings, runs: dict[str, dict[str, Any]]) -> None:
    unexplained, _ = _reconcile(findings, runs)
    assert not unexplained, "names that follow no semantic convention and are not listed; " + HOW_TO_LIST \
        + f" (tables drawn up against semconv package {tables.SEMCONV_PACKAGE}, installed {registry().version})"\
        + ":\n" + "\n".join(f"  {s}: {f}" for s, f in sorted(unexplained.items()))


def test_no_stale_entry_in_the_tables(findings: Findings, runs: dict[str, dict[str, Any]]) -> None:
    _, stale = _reconcile(findings, runs)
    assert not stale, ("listed in tests/semconv_tables.py but no longer emitted that way (fixed: remove them, "
                       "then run `python -m tests.semconv_tables`; tables drawn up against semconv package "
                       f"{tables.SEMCONV_PACKAGE}, installed {registry().version}): " + ", ".join(stale))


def test_promtool_check_metrics_complains_only_as_listed(runs: dict[str, dict[str, Any]]) -> None:
    promtool = need(built_tool("promtool"), "promtool (scripts/build-servers.sh prometheus)")
    for mode, run in runs.items():
        proc = subprocess.run([promtool, "check", "metrics"], input=run["metrics_text"], capture_output=True,
                              text=True, timeout=60)
        complaints = {line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()}
        listed = set(tables.PROMTOOL_EXPECTED) | set(tables.PROMTOOL_DEVIATIONS)
        assert complaints == listed, (
            f"{mode}: promtool's complaints differ from PROMTOOL_EXPECTED/PROMTOOL_DEVIATIONS in "
            f"tests/semconv_tables.py (new: {sorted(complaints - listed)}; gone, remove them: "
            f"{sorted(listed - complaints)})")
        assert (proc.returncode == 0) is (not complaints), (mode, proc.returncode)
