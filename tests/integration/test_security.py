"""Access control per the contract, the audit log, the metrics token and the exposure warning."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.apprunner import RunningApp, run_demo

pytestmark = pytest.mark.integration

VIEWER, ADMIN, METRICS = "view-key-9f8e7d", "admin-key-1a2b3c", "scrape-token-5d6e"


@pytest.fixture(scope="module")
def secured() -> RunningApp:
    env = {"SIZEWISE_API_KEYS": f"viewer:{VIEWER},admin:{ADMIN}", "SIZEWISE_METRICS_TOKEN": METRICS}
    with run_demo(env) as app:
        yield app


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_probes_are_always_public(secured: RunningApp) -> None:
    assert httpx.get(f"{secured.url}/livez").status_code == 200
    assert httpx.get(f"{secured.url}/readyz").status_code in (200, 503)


@pytest.mark.parametrize("path", ["/errors/summary", "/errors/groups", "/dashboard/overview"])
def test_monitoring_data_needs_a_key(secured: RunningApp, path: str) -> None:
    anonymous = httpx.get(f"{secured.url}{path}", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert httpx.get(f"{secured.url}{path}", headers=auth("wrong-key"), timeout=10).status_code == 401
    assert httpx.get(f"{secured.url}{path}", headers=auth(VIEWER), timeout=10).status_code == 200
    assert httpx.get(f"{secured.url}{path}", headers=auth(ADMIN), timeout=10).status_code == 200


def test_viewer_cannot_do_admin_actions(secured: RunningApp) -> None:
    url = f"{secured.url}/errors/groups/00000000000000000000000000000000"
    denied = httpx.patch(url, json={"status": "resolved"}, headers=auth(VIEWER), timeout=10)
    assert denied.status_code == 403
    allowed = httpx.patch(url, json={"status": "resolved"}, headers=auth(ADMIN), timeout=10)
    assert allowed.status_code == 404  # authorised; the group just doesn't exist


def test_health_details_only_for_viewers(secured: RunningApp) -> None:
    anonymous = httpx.get(f"{secured.url}/health", timeout=10)
    detailed = httpx.get(f"{secured.url}/health", headers=auth(VIEWER), timeout=10)
    assert anonymous.status_code in (200, 503) and detailed.status_code in (200, 503)
    assert "checks" not in anonymous.json() or not anonymous.json()["checks"]
    assert detailed.json().get("checks")


def test_metrics_token(secured: RunningApp) -> None:
    assert httpx.get(f"{secured.url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{secured.url}/metrics", headers=auth(VIEWER), timeout=10).status_code == 401
    ok = httpx.get(f"{secured.url}/metrics", headers=auth(METRICS), timeout=10)
    assert ok.status_code == 200 and "sizewise_" in ok.text


def test_audit_lines_name_the_key_id_never_the_key(secured: RunningApp) -> None:
    httpx.get(f"{secured.url}/errors/summary", headers=auth(VIEWER), timeout=10)
    httpx.get(f"{secured.url}/errors/summary", headers=auth("not-a-key-xyz"), timeout=10)
    log = secured.log.read_text()
    for secret in (VIEWER, ADMIN, METRICS, "not-a-key-xyz"):
        assert secret not in log
    audit = [json.loads(line) for line in log.splitlines()
             if line.startswith("{") and '"access"' in line]
    routes = {(a["route"], a["result"]) for a in audit}
    assert ("/errors/summary", 200) in routes and ("/errors/summary", 401) in routes
    assert all(a["key_id"] is None or a["key_id"].startswith("k-") for a in audit)
    assert all("timestamp" in a for a in audit)


def test_loud_warning_when_exposed_without_keys() -> None:
    with run_demo(env={"SIZEWISE_API_KEYS": ""}, cmd=None, args=["--host", "0.0.0.0"]) as app:
        # run_demo passes --host 127.0.0.1 first; the later --host wins in argparse
        log = app.log.read_text()
    assert "OPEN" in log and "SIZEWISE_API_KEYS" in log
