"""The fast path and the public path (``SIZEWISE_FASTPATH=0``) export the same series and counts.

The same app and traffic (tests/integration/fastpath_modes_app.py: HTTP routes, a mounted sub-app,
404/405/422/503, SQLAlchemy statements including a failing one, Redis-backed cache hits, misses and
sets) run once per mode in a fresh interpreter against a real Redis. The HTTP, DB and cache series
must be the same set of (name, labels), with equal counts; the public path logs one warning saying
why, the fast path none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sizewise_otel.fastpath import detect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("http_server_", "db_client_", "sizewise_cache_")
COUNTED = ("_count", "_total", "http_server_active_requests")
# Per-process by nature (a random instance id).
VOLATILE = frozenset({"service_instance_id"})
# The Redis server's own INFO counters and memory: the two runs share the server, so its keyspace
# counts add up across them (not a difference between the paths). Not compared.
SERVER_STATE = "sizewise_cache_redis_"
# The one known difference: a route inside a mounted sub-app. The fast layer reports the full
# template, the contrib FastAPI instrumentor only the mount's path. Same label keys and counts.
MOUNTED_ROUTE = {"fast": "/sub/ping/{n}", "public": "/sub"}


def run(redis_url: str, fastpath: str) -> tuple[dict, str]:
    env = {**os.environ, "SIZEWISE_FASTPATH": fastpath, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.integration.fastpath_modes_app", redis_url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT ")), done.stdout + done.stderr


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(FAMILIES) and not s.name.startswith(SERVER_STATE):
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in VOLATILE))
                out[(s.name, labels)] = s.value
    return out


def full_mount_route(found: dict) -> dict:
    """The public path's mount-only route renamed to the fast path's full template (the known difference)."""
    return {(name, tuple(sorted(("http_route", MOUNTED_ROUTE["fast"]) if kv == ("http_route", MOUNTED_ROUTE["public"])
                                else kv for kv in labels))): v for (name, labels), v in found.items()}


def test_both_paths_export_the_same_series_and_counts(redis_url: str) -> None:
    # The matrix's floor and middle cells run this too: their SDKs lack what the fast path needs, so
    # "fast" falls back to the public path there, says why once, and must still count the same.
    available = detect.status().enabled
    fast, fast_err = run(redis_url, "1")
    public, public_err = run(redis_url, "0")
    assert fast["fastpath"] is available and public["fastpath"] is False
    assert public["reason"] == "SIZEWISE_FASTPATH=0"
    assert public_err.count("fast path off") == 1 and "SIZEWISE_FASTPATH=0" in public_err
    if available:
        assert "fast path off" not in fast_err
    else:
        assert fast_err.count("fast path off") == 1 and "installed SDK lacks" in fast_err, fast_err[-2000:]

    a, b = series(fast["metrics"]), series(public["metrics"])
    mounted = [k for k in b if ("http_route", MOUNTED_ROUTE["public"]) in k[1]]
    assert mounted, "the contrib instrumentor reports a mounted sub-app's route as the mount path"
    a, b = full_mount_route(a), full_mount_route(b)
    for prefix in FAMILIES:  # every kind of traffic is there at all
        assert any(name.startswith(prefix) for name, _ in a), prefix
    assert set(a) == set(b), f"only fast: {sorted(set(a) - set(b))}\nonly public: {sorted(set(b) - set(a))}"
    counts = {k: v for k, v in a.items() if k[0].endswith(COUNTED)}
    assert counts == {k: b[k] for k in counts}
    # the traffic is what the app drove: 10 HTTP requests (the /metrics scrape is not measured)
    http = sum(v for (name, _), v in a.items() if name == "http_server_request_duration_seconds_count")
    assert http == 10
    routes = {dict(labels).get("http_route") for name, labels in a if name.startswith("http_server_request")}
    assert {"/items/{item_id}", "/broken", "/sub/ping/{n}"} <= routes
    failed = [labels for name, labels in a if name == "db_client_operation_duration_seconds_count"
              and dict(labels).get("error_type")]
    assert failed, "the failing statement is counted with error.type"
