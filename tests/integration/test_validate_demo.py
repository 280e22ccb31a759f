"""``sizewise-otel validate`` against the real demo (``tests/apprunner.run_demo``, under load).

Healthy: keys configured, loopback, embedded defaults -> score >= 90. Broken: bound to 0.0.0.0
without keys, a dead Redis and a missing series (metrics collection off) -> the score drops below
the bar and every failure names its fix. The JSON document and the table agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from sizewise_otel.validate import validate
from sizewise_otel.validate.checks_metrics import _traffic
from sizewise_otel.validate.model import Status, score
from sizewise_otel.validate.report import LABEL, as_json, table
from tests.apprunner import run_demo
from tests.servers import free_port

pytestmark = pytest.mark.integration

VIEWER, ADMIN = "viewer-key-validate-0001", "admin-key-validate-0002"
KEYS = f"viewer:{VIEWER},admin:{ADMIN}"
# Host resources belong to the test machine, not to the deployment under test: a busy CI box may
# push them past their thresholds. Every other check must pass or warn on the healthy setup.
MACHINE_STATE = {"health: cpu", "health: memory", "health: disk", "health: event_loop",
                 f"p95 of GET {'/health'}, with and without trace headers"}


def wait_for_traffic(url: str, timeout: float = 30.0) -> None:
    """Until the load has produced every traffic series (database, cache, calculations, ...)."""
    wanted = {s.sample_name for s in _traffic()}
    deadline = time.monotonic() + timeout
    missing = wanted
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        missing = {n for n in wanted if f"\n{n}{{" not in text and f"\n{n} " not in text}
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"load produced no {sorted(missing)}")


def test_healthy_demo_scores_at_least_90_and_json_matches_table() -> None:
    with run_demo(env={"SIZEWISE_API_KEYS": KEYS}, args=["--load"]) as app:
        wait_for_traffic(app.url)
        results, ctx = validate(app.url, api_key=ADMIN)
        value = score(results)
        text = table(results, url=app.url, min_score=90)
        print(text)
        assert value >= 90, text
        unexpected = [r for r in results if r.status is Status.FAIL and r.name not in MACHINE_STATE]
        assert not unexpected, text
        by_name = {r.name: r for r in results}
        for name in ("API keys configured", "not bound to all interfaces without keys",
                     "diagnostics are admin-only", "synthetic error grouped (/errors/groups, /errors/{id})",
                     "stored errors are scrubbed", "no series with client-chosen label values",
                     "catalog series on /metrics", "anonymous /health shows status only"):
            assert by_name[name].status is Status.PASS, (name, by_name[name])
        assert ctx.view.pid is not None and "service process" in ctx.view.source

        doc = json.loads(json.dumps(as_json(results, url=app.url, prometheus=None, alertmanager=None,
                                            min_score=90, started_at="t", duration=1,
                                            local_source=ctx.view.source)))
        assert doc["score"] == value and doc["passed"] is True
        lines = text.splitlines()
        for check in doc["checks"]:
            row = next(line for line in lines if line.startswith(check["category"])
                       and check["name"][:40] in line)
            assert f"  {LABEL[Status(check['status'])]}  " in row, (check, row)
        assert f"score {doc['score']:.1f} / 100" in text

        # The CLI: --json on stdout (parses), progress on stderr, exit code from --min-score.
        proc = subprocess.run([sys.executable, "-m", "sizewise_otel.cli", "validate", "--url", app.url,
                               "--api-key", ADMIN, "--json", "--min-score", "0"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        cli = json.loads(proc.stdout)
        assert [c["name"] for c in cli["checks"]] == [c["name"] for c in doc["checks"]]
        assert cli["min_score"] == 0 and cli["passed"] is True
        assert "[ 1/" in proc.stderr and "components" in proc.stderr


def test_broken_setup_drops_the_score_and_names_each_fix() -> None:
    env = {"SIZEWISE_API_KEYS": "", "SIZEWISE_API_KEYS_FILE": "",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
           "METRICS_COLLECTION_ENABLED": "false"}              # the system gauges go missing
    with run_demo(env=env, args=["--load", "--host", "0.0.0.0"]) as app:
        time.sleep(3)  # some load, and a health refresh that sees Redis down
        results, _ = validate(app.url)
        text = table(results, url=app.url, min_score=90)
        print(text)
        value = score(results)
        assert value < 90, text
        by_name = {r.name: r for r in results}
        expected_fixes = {
            "API keys configured": "SIZEWISE_API_KEYS",
            "not bound to all interfaces without keys": "127.0.0.1",
            "diagnostics are admin-only": "SIZEWISE_API_KEYS",
            "health: redis": "Redis",
            "catalog series on /metrics": "METRICS_COLLECTION_ENABLED",
        }
        for name, hint in expected_fixes.items():
            r = by_name[name]
            assert r.status is Status.FAIL, (name, r)
            assert hint.lower() in r.fix.lower(), (name, r.fix)
        assert "0.0.0.0" in by_name["not bound to all interfaces without keys"].reason
        assert "sizewise_cpu_usage_percent" in by_name["catalog series on /metrics"].reason
        for r in results:
            if r.status in (Status.FAIL, Status.WARN):
                assert r.fix, r
                assert f"fix: {r.fix[:20]}" in text.replace("\n", " ").replace("  ", " ") or r.fix[:20] in text

        proc = subprocess.run([sys.executable, "-m", "sizewise_otel.cli", "validate", "--url", app.url],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stdout
        assert "BELOW MINIMUM" in proc.stdout
