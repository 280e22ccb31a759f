"""``sizewise-otel demo --load`` reads like a product: its console, for real, under its own load.

The load fails on purpose (the legacy CSV import bug answers 500). Each such error is captured by
the tracker and must print one ``error captured`` line with its id and group, never uvicorn's
traceback; the start banner says what the load does, where to look and with which credentials.
With error tracking off nothing captures those errors, and their tracebacks must still print.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from sizewise_otel.web.auth import key_id
from tests.apprunner import RunningApp, run_demo

VIEWER_KEY = "viewer-key-for-the-console-test-1"
ADMIN_KEY = "admin-key-for-the-console-test-22"
KEYS = f"viewer:{VIEWER_KEY},admin:{ADMIN_KEY}"
AUTH = {"Authorization": f"Bearer {VIEWER_KEY}"}
MIN_ERRORS = 6
DEADLINE = 180.0  # generous: a loaded 2-core machine; the load sends ~0.6 deliberate errors/s


def _until(predicate: Any, what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _console_lines(app: RunningApp) -> list[dict[str, Any]]:
    """The JSON lines of the console whose event is "error captured" (complete lines only)."""
    out = []
    for line in app.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and line.endswith("}"):
            record = json.loads(line)
            if record.get("event") == "error captured":
                out.append(record)
    return out


def _stored(app: RunningApp) -> dict[str, tuple[str, str]]:
    """Every stored error id -> (group id, route), from the public API."""
    groups = httpx.get(f"{app.url}/errors/groups", params={"limit": 500}, headers=AUTH, timeout=10)
    groups.raise_for_status()
    out: dict[str, tuple[str, str]] = {}
    for g in groups.json()["groups"]:
        detail = httpx.get(f"{app.url}/errors/groups/{g['group_id']}", headers=AUTH, timeout=10).json()
        for error_id in detail["sample_event_ids"]:
            out[error_id] = (g["group_id"], g["route"])
    return out


def _captured_total(app: RunningApp) -> int:
    resp = httpx.get(f"{app.url}/errors/summary", headers=AUTH, timeout=10)
    return int(resp.json()["total_events_all_time"]) if resp.status_code == 200 else 0


def test_demo_under_load_prints_one_line_per_captured_error_and_no_traceback() -> None:
    # Every event kept (no per-group sample cap), so the API can list all of them.
    env = {"SIZEWISE_API_KEYS": KEYS, "ERROR_SAMPLES_PER_GROUP": "1000"}
    with run_demo(env=env, args=["--load"]) as app:
        _until(lambda: _captured_total(app) >= MIN_ERRORS, f"{MIN_ERRORS} captured errors")
        stored = _stored(app)
        assert len(stored) >= MIN_ERRORS
        # Every capture stored so far has its line (the console reports once the writer has it) ...
        _until(lambda: set(stored) <= {r["error_id"] for r in _console_lines(app)},
               "a console line for every stored error", 60.0)
        printed = _console_lines(app)
        # ... and every line is a distinct capture the tracker stored, with its group and route.
        ids = [r["error_id"] for r in printed]
        assert len(ids) == len(set(ids)), "an error printed twice"

        def all_printed_stored() -> dict[str, tuple[str, str]] | None:
            now = _stored(app)
            return now if set(ids) <= set(now) else None

        stored = _until(all_printed_stored, "the printed errors to be stored", 60.0)
        for record in printed:
            group_id, route = stored[record["error_id"]]
            assert record["group_id"] == group_id and record["route"] == route
            assert record["route"] == "/api/hvac/import" and record["error_type"] == "ValueError"
            assert record["details"] == f"/errors/{record['error_id']}"
        console = app.log.read_text(errors="replace")

    assert "Traceback" not in console
    assert "Exception in ASGI application" not in console
    banner = console[console.index("SizeWise HVAC demo on http://127.0.0.1:"):]
    for expected in (f"{app.url}/dashboard", f"{app.url}/errors/groups", "requests/s until Ctrl-C",
                     "legacy CSV imports", "deliberate server errors a minute",
                     "'Authorization: Bearer <key>'", f"viewer {key_id(VIEWER_KEY)}",
                     f"admin {key_id(ADMIN_KEY)}", "/dashboard#key=<viewer key>"):
        assert expected in banner, expected
    assert VIEWER_KEY not in console and ADMIN_KEY not in console  # keys are never printed


def test_errors_nobody_captured_keep_their_traceback() -> None:
    with run_demo(env={"ERROR_TRACKING_ENABLED": "false"}, args=["--load"]) as app:
        _until(lambda: "ValueError: could not convert string to float" in app.log.read_text(errors="replace"),
               "the import bug's traceback")
        console = app.log.read_text(errors="replace")
    assert "Traceback (most recent call last)" in console
    assert "Exception in ASGI application" in console
    assert '"event": "error captured"' not in console
    assert "not tracked (ERROR_TRACKING_ENABLED=false)" in console
