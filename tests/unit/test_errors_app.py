"""An instrumented FastAPI app end to end (httpx ASGITransport, real SQLite file): automatic capture,
grouping of 1,000 errors, restart, the HTTP API with auth and validation, PII in nothing we emit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from sizewise_otel.errors import reset_error_tracker
from tests.unit.test_errors_helpers import (
    ADMIN,
    PII,
    TRACEPARENT,
    VIEWER,
    build_app,
    leaked,
    metric_value,
    span_exporter,
    spans_text,
    test_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SITES = {"/calc/duct/{duct_id}": "ValueError", "/calc/load/{room}": "KeyError",
         "/billing/{account}": "tests.unit.test_errors_helpers.PaymentDeclined"}


class Running:
    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.tracker = app.state.sizewise.tracker

    async def flush(self) -> None:
        assert await asyncio.to_thread(self.tracker.flush, 20)


async def start(db: Path) -> tuple[Running, Any]:
    app = build_app(test_settings(f"sqlite:///{db}"))
    run_tracker = app.state.sizewise.tracker
    await run_tracker.initialize()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://testserver")
    return Running(app, client), client


async def stop(running: Running) -> None:
    await running.client.aclose()
    await running.tracker.shutdown()
    reset_error_tracker()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    r, _ = await start(tmp_path / "errors.db")
    yield r
    await stop(r)


async def drive(client: httpx.AsyncClient, n: int, offset: int = 0) -> None:
    async def one(i: int) -> None:
        k = i % 3
        if k == 0:
            r = await client.get(f"/calc/duct/{i}")
        elif k == 1:
            r = await client.get(f"/calc/load/{i * 7919}")
        else:
            r = await client.post(f"/billing/{i}")
        assert r.status_code == 500

    for start_i in range(offset, offset + n, 50):
        await asyncio.gather(*(one(i) for i in range(start_i, min(start_i + 50, offset + n))))


async def groups_of(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/errors/groups", params={"limit": 500}, headers=VIEWER)
    assert r.status_code == 200, r.text
    return r.json()["groups"]


async def test_thousand_errors_from_three_sites_make_three_groups(running: Running) -> None:
    before = (await running.client.get("/metrics")).text
    await drive(running.client, 1000)
    await running.flush()
    groups = await groups_of(running.client)
    assert len(groups) == 3
    assert sum(g["count"] for g in groups) == 1000
    assert {g["route"]: g["type"] for g in groups} == SITES
    assert sorted(g["count"] for g in groups) == [333, 333, 334]
    assert all(g["severity"] == "high" and g["status"] == "unresolved" for g in groups)
    after = (await running.client.get("/metrics")).text
    delta = (metric_value(after, "sizewise_errors_total", error_type="ValueError", sizewise_error_severity="high")
             - metric_value(before, "sizewise_errors_total", error_type="ValueError", sizewise_error_severity="high"))
    assert delta == 334
    new_groups = (metric_value(after, "sizewise_error_groups_new_total")
                  - metric_value(before, "sizewise_error_groups_new_total"))
    assert new_groups == 3
    summary = (await running.client.get("/errors/summary", headers=VIEWER)).json()
    assert summary["total_events"] == 1000 and summary["total_groups"] == 3
    assert summary["by_severity"]["high"] == 1000
    assert len(summary["top_groups"]) == 3 and summary["rate_per_minute"] > 0


async def test_restart_keeps_groups(tmp_path: Path) -> None:
    db = tmp_path / "errors.db"
    first, _ = await start(db)
    await drive(first.client, 30)
    await first.flush()
    ids_before = {g["group_id"]: g["count"] for g in await groups_of(first.client)}
    await stop(first)

    second, _ = await start(db)
    try:
        after_restart = {g["group_id"]: g["count"] for g in await groups_of(second.client)}
        assert after_restart == ids_before
        await drive(second.client, 30)
        await second.flush()
        grown = {g["group_id"]: g["count"] for g in await groups_of(second.client)}
        assert set(grown) == set(ids_before)
        assert sum(grown.values()) == 60
    finally:
        await stop(second)


async def test_personal_data_never_leaves(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    exporter = span_exporter()
    exporter.clear()
    c = running.client
    with structlog.testing.capture_logs() as logs, caplog.at_level("DEBUG"):
        for i in range(5):
            r = await c.post(f"/billing/{i}", headers={
                "traceparent": TRACEPARENT.format(trace=f"{i + 1:032x}"),
                "Authorization": f"Bearer {PII['bearer']}", "Cookie": f"session={PII['jwt']}",
                "User-Agent": f"agent {PII['email']}"})
            assert r.status_code == 500
        manual = (await c.post("/manual", headers={"traceparent": TRACEPARENT.format(trace="f" * 32)})).json()
        await running.flush()
        bodies: list[str] = []
        for path in ("/errors/summary", "/errors/groups"):
            r = await c.get(path, headers=VIEWER)
            assert r.status_code == 200
            bodies.append(r.text)
        groups = (await c.get("/errors/groups", headers=VIEWER)).json()["groups"]
        for g in groups:
            detail = (await c.get(f"/errors/groups/{g['group_id']}", headers=VIEWER)).json()
            bodies.append(repr(detail))
            for eid in detail["sample_event_ids"]:
                r = await c.get(f"/errors/{eid}", headers=VIEWER)
                assert r.status_code == 200
                bodies.append(r.text)
        manual_event = (await c.get(f"/errors/{manual['error_id']}", headers=VIEWER)).json()
    api_text = "\n".join(bodies)
    assert leaked(api_text) == []
    # Positive controls: the data was there and was replaced, not lost.
    ctx = manual_event["event"]["context"]
    assert ctx["extra"]["password"] == "[Filtered]" and ctx["headers"]["Authorization"] == "[Filtered]"
    assert ctx["user_id"] == "[email]" and "[card]" in manual_event["event"]["message"]
    assert "[jwt]" in manual_event["event"]["message"]
    assert leaked(repr(logs)) == [] and leaked(caplog.text) == []
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.attributes.get("http.route") == "/billing/{account}"]
    assert len(server) == 5
    assert all(any(e.name == "exception" and "sizewise.error.id" in e.attributes for e in s.events)
               for s in server)
    assert all(s.status.status_code.name == "ERROR" for s in server)
    assert leaked(spans_text(spans)) == []


async def test_server_error_status_is_captured(running: Running) -> None:
    exporter = span_exporter()
    exporter.clear()
    for _ in range(3):
        assert (await running.client.get("/unavailable")).status_code == 503
    assert (await running.client.get("/ok")).status_code == 200
    await running.flush()
    groups = await groups_of(running.client)
    assert [(g["type"], g["route"], g["count"]) for g in groups] == [("HTTPServerError503", "/unavailable", 3)]
    # The HTTP semconv: a 5xx without an exception sets status and error.type, and adds no event.
    server = [s for s in exporter.get_finished_spans() if s.attributes.get("http.route") == "/unavailable"]
    assert len(server) == 3
    assert [(s.status.status_code.name, s.status.description, s.attributes["error.type"], len(s.events))
            for s in server] == [("ERROR", None, "503", 0)] * 3


async def test_auth_validation_and_not_found(running: Running) -> None:
    c = running.client
    await drive(c, 3)
    await running.flush()
    gid = (await groups_of(c))[0]["group_id"]
    assert (await c.get("/errors/summary")).status_code == 401
    assert (await c.get("/errors/groups", headers={"Authorization": "Bearer wrong"})).status_code == 401
    r = await c.patch(f"/errors/groups/{gid}", json={"status": "resolved"}, headers=VIEWER)
    assert r.status_code == 403
    assert (await c.post("/errors/diagnostics", headers=VIEWER)).status_code == 403
    for bad in ("nope", "0" * 36, "123e4567-e89b-12d3-a456-426614174000", "x' OR 1=1 --"):
        r = await c.get(f"/errors/{bad}", headers=VIEWER)
        assert r.status_code == 404 and "detail" in r.json()
    assert (await c.get(f"/errors/groups/{'f' * 32}", headers=VIEWER)).status_code == 404
    assert (await c.patch(f"/errors/groups/{'f' * 32}", json={"status": "resolved"},
                          headers=ADMIN)).status_code == 404
    assert (await c.patch("/errors/groups/bad-id", json={"status": "resolved"}, headers=ADMIN)).status_code == 404
    for params in ({"limit": 0}, {"limit": 501}, {"status": "open"}, {"severity": "huge"},
                   {"since": "yesterday"}, {"cursor": "garbage!"}):
        r = await c.get("/errors/groups", params=params, headers=VIEWER)
        assert r.status_code == 422, params
    assert (await c.get("/errors/summary", params={"window_hours": -1}, headers=VIEWER)).status_code == 422
    assert (await c.patch(f"/errors/groups/{gid}", json={"status": "gone"}, headers=ADMIN)).status_code == 422
    assert (await c.patch(f"/errors/groups/{gid}", json={}, headers=ADMIN)).status_code == 422


async def test_resolve_then_regress_and_paging(running: Running) -> None:
    c = running.client
    got: list[dict[str, Any]] = []
    running.tracker.add_alert_listener(got.append)
    await drive(c, 3)
    await running.flush()
    groups = await groups_of(c)
    target = next(g for g in groups if g["type"] == "ValueError")
    r = await c.patch(f"/errors/groups/{target['group_id']}", json={"status": "resolved"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    r = await c.get("/errors/groups", params={"status": "resolved"}, headers=VIEWER)
    assert [g["group_id"] for g in r.json()["groups"]] == [target["group_id"]]
    await drive(c, 1)  # the duct site again
    await running.flush()
    again = (await c.get(f"/errors/groups/{target['group_id']}", headers=VIEWER)).json()
    assert again["status"] == "unresolved" and again["regressions"] == 1 and again["count"] == 2
    assert [e["kind"] for e in got if e.get("group_id") == target["group_id"]] == ["new_group", "regression"]
    page1 = (await c.get("/errors/groups", params={"limit": 2}, headers=VIEWER)).json()
    assert len(page1["groups"]) == 2 and page1["next_cursor"]
    page2 = (await c.get("/errors/groups", params={"limit": 2, "cursor": page1["next_cursor"]},
                         headers=VIEWER)).json()
    assert len(page2["groups"]) == 1 and page2["next_cursor"] is None
    ids = {g["group_id"] for g in page1["groups"] + page2["groups"]}
    assert len(ids) == 3


async def test_diagnostics_and_cleanup(running: Running) -> None:
    r = await running.client.post("/errors/diagnostics", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] is True and len(body["group_id"]) == 32
    assert body["pipeline"]["writer_running"] is True
    r = await running.client.post("/errors/cleanup", headers=ADMIN)
    assert r.status_code == 200 and r.json()["deleted"]["groups"] == 0
