"""The error tracker on a real PostgreSQL: grouping, restart, two worker processes counting exactly,
personal data absent from real server logs, and a store that disappears or restarts mid-traffic."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from sizewise_otel.errors import ErrorContext, ErrorTracker, reset_error_tracker
from sizewise_otel.errors.store import ErrorStore
from sizewise_otel.telemetry import get_telemetry
from tests import servers
from tests.tools import venv_tool
from tests.unit.test_errors_helpers import (
    PII,
    VIEWER,
    build_app,
    leaked,
    metric_value,
    test_settings,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def hit(client: httpx.Client, i: int) -> int:
    k = i % 3
    if k == 0:
        return client.get(f"/calc/duct/{i}").status_code
    if k == 1:
        return client.get(f"/calc/load/{i * 7919}").status_code
    return client.post(f"/billing/{i}", headers={"Authorization": f"Bearer {PII['bearer']}"}).status_code


def counts(url: str) -> dict[str, int]:
    store = ErrorStore(url)
    try:
        groups, _ = store.list_groups(limit=500)
    finally:
        store.dispose()
    return {g["route"]: g["count"] for g in groups}


# --- in-process, through the app ----------------------------------------------------------------

async def _drive_app(url: str, n: int) -> dict[str, int]:
    app = build_app(test_settings(url))
    tracker = app.state.sizewise.tracker
    await tracker.initialize()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                     base_url="http://t") as client:
            for start in range(0, n, 50):
                async def one(i: int) -> None:
                    k = i % 3
                    path = (f"/calc/duct/{i}", f"/calc/load/{i * 7919}", f"/billing/{i}")[k]
                    r = await (client.post(path) if k == 2 else client.get(path))
                    assert r.status_code == 500
                await asyncio.gather(*(one(i) for i in range(start, min(start + 50, n))))
            assert await asyncio.to_thread(tracker.flush, 30)
            r = await client.get("/errors/groups", params={"limit": 500}, headers=VIEWER)
            return {g["route"]: g["count"] for g in r.json()["groups"]}
    finally:
        await tracker.shutdown()
        reset_error_tracker()


def test_thousand_errors_three_groups_and_restart_on_postgres(postgres_url: str) -> None:
    first = asyncio.run(_drive_app(postgres_url, 1000))
    assert len(first) == 3 and sum(first.values()) == 1000
    second = asyncio.run(_drive_app(postgres_url, 300))  # a restarted service, same database
    assert set(second) == set(first)
    assert sum(second.values()) == 1300


# --- two real worker processes -----------------------------------------------------------------

UVICORN = [sys.executable, "-m", "uvicorn", "tests.unit.test_errors_helpers:make_app", "--factory",
           "--host", "127.0.0.1", "--port", "{port}"]
# Forked workers sharing a tracker built before the fork (--preload): the fork-safety case.
GUNICORN_ARGS = ["-w", "2", "-k", "uvicorn.workers.UvicornWorker", "--preload",
                 "-b", "127.0.0.1:{port}", "tests.unit.test_errors_helpers:make_app()"]


@contextlib.contextmanager
def worker(url: str, log: Path, argv: list[str] = UVICORN) -> Iterator[str]:
    port = servers.free_port()
    env = servers.clean_env({"ERROR_STORE_URL": url, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [a.format(port=port) for a in argv],
            cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        servers.wait_for(lambda: proc.poll() is None and httpx.get(f"{base}/ok").status_code == 200,
                         60, f"worker on {port}")
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # lifespan shutdown flushes the queue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_two_worker_processes_count_exactly_and_logs_stay_clean(postgres_url: str, tmp_path: Path) -> None:
    n_each = 450
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    with worker(postgres_url, logs[0]) as a, worker(postgres_url, logs[1]) as b:
        def drive(base: str, offset: int) -> list[int]:
            with httpx.Client(base_url=base, timeout=30,
                              limits=httpx.Limits(max_keepalive_connections=0)) as client:
                return [hit(client, i) for i in range(offset, offset + n_each // 3)]

        with ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(drive, base, k * 1000) for base in (a, b) for k in range(3)]
            statuses = [s for j in jobs for s in j.result()]
        assert statuses.count(500) == 2 * n_each
        with httpx.Client(timeout=30) as client:
            manual = client.post(f"{a}/manual").json()
            api = [client.get(f"{base}{p}", headers=VIEWER).text
                   for base in (a, b) for p in ("/errors/summary", "/errors/groups")]
            # the manual error is stored by the background writer: read it once it is there
            event = f"{a}/errors/{manual['error_id']}"
            servers.wait_for(lambda: client.get(event, headers=VIEWER).status_code == 200, 30, event)
            api.append(client.get(event, headers=VIEWER).text)
    result = counts(postgres_url)
    billing = result.pop("/manual")
    assert billing == 1
    assert len(result) == 3
    assert sum(result.values()) == 2 * n_each
    assert sorted(result.values()) == [300, 300, 300]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "Exception in ASGI application" in text  # uvicorn did log the tracebacks...
    assert leaked(text) == []  # ...scrubbed
    assert leaked("\n".join(api)) == []
    # Each new group is signalled exactly once across both workers.
    assert text.count("kind=new_group") == 4


def test_forked_gunicorn_workers_count_exactly(postgres_url: str, tmp_path: Path) -> None:
    gunicorn = venv_tool("gunicorn")
    assert gunicorn, "gunicorn (a test dependency) is not installed beside the interpreter: pip install -e .[test]"
    log = tmp_path / "gunicorn.log"
    with worker(postgres_url, log, [gunicorn, *GUNICORN_ARGS]) as base:
        def drive(offset: int) -> list[int]:
            with httpx.Client(base_url=base, timeout=30,
                              limits=httpx.Limits(max_keepalive_connections=0)) as client:
                return [hit(client, i) for i in range(offset, offset + 90)]

        with ThreadPoolExecutor(4) as pool:
            statuses = [s for j in [pool.submit(drive, k * 1000) for k in range(4)] for s in j.result()]
    assert statuses.count(500) == 360
    result = counts(postgres_url)
    assert sorted(result.values()) == [120, 120, 120], (result, log.read_text()[-3000:])
    assert log.read_text().count("kind=new_group") == 3


# --- faults -------------------------------------------------------------------------------------

def _capture_n(tracker: ErrorTracker, n: int) -> None:
    for i in range(n):
        try:
            raise ConnectionError(f"pool exhausted after {i} tries")
        except ConnectionError as exc:
            tracker.capture_error(exc, ErrorContext(endpoint="/calc/{id}", method="GET"))


RETRY = 2.0  # the writer's retry window against a gone store


def test_database_gone_counts_drops_and_service_keeps_serving(postgres: servers.Server,
                                                              postgres_url: str) -> None:
    async def scenario() -> dict[str, Any]:
        app = build_app(test_settings(postgres_url))
        tracker = app.state.sizewise.tracker
        tracker.writer.retry_seconds = RETRY
        await tracker.initialize()
        out: dict[str, Any] = {}
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                         base_url="http://t") as c:
                assert (await c.get("/calc/duct/1")).status_code == 500
                assert await asyncio.to_thread(tracker.flush, 20)
                before = (await c.get("/metrics")).text
                admin = sa.create_engine(servers.postgres_url(postgres), isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    dbname = postgres_url.rsplit("/", 1)[1]
                    conn.execute(sa.text(f'DROP DATABASE "{dbname}" WITH (FORCE)'))
                admin.dispose()
                t0 = time.perf_counter()
                for i in range(20):
                    assert (await c.get(f"/calc/duct/{i}")).status_code == 500
                    assert (await c.get("/ok")).status_code == 200
                out["elapsed"] = time.perf_counter() - t0
                assert await asyncio.to_thread(tracker.flush, 60)  # a few batches, RETRY s each
                after = (await c.get("/metrics")).text
                out["dropped"] = (metric_value(after, "sizewise_errors_dropped_total",
                                                sizewise_error_drop_reason="store_unavailable")
                                  - metric_value(before, "sizewise_errors_dropped_total",
                                                 sizewise_error_drop_reason="store_unavailable"))
                r = await c.get("/errors/summary", headers=VIEWER)
                out["api_status"] = r.status_code
                out["api_body"] = r.json()
        finally:
            await tracker.shutdown()
            reset_error_tracker()
        return out

    out = asyncio.run(scenario())
    assert out["dropped"] == 20
    # Had the store sat on the request path, each of the 20 errors would have waited out the
    # writer's retries (20 x RETRY = 40 s); off it, the 40 requests take well under a second.
    assert out["elapsed"] < 20 * RETRY / 2, out["elapsed"]
    assert out["api_status"] == 503 and "unavailable" in out["api_body"]["detail"]


def test_postgres_restart_loses_nothing(postgres: servers.Server, postgres_url: str) -> None:
    settings = test_settings(postgres_url)
    tracker = ErrorTracker(settings, get_telemetry(settings))
    tracker.writer.retry_seconds = 30
    asyncio.run(tracker.initialize())
    try:
        _capture_n(tracker, 50)
        assert tracker.flush(20)
        postgres.stop()
        try:
            _capture_n(tracker, 50)  # queued while the database is down
            time.sleep(0.5)
        finally:
            postgres.start()
        _capture_n(tracker, 50)
        assert tracker.flush(40)
        assert tracker.dropped["store_unavailable"] == 0
        result = counts(postgres_url)
        assert result == {"/calc/{id}": 150}
    finally:
        asyncio.run(tracker.shutdown())


def test_hostile_strings_are_stored_and_served_safely(postgres_url: str) -> None:
    settings = test_settings(postgres_url)
    tracker = ErrorTracker(settings, get_telemetry(settings))
    asyncio.run(tracker.initialize())
    try:
        hostile = "x'); DROP TABLE sizewise_error_groups;-- \x00 nul \udcff bad utf-8 \u202e rtl"
        try:
            raise ValueError(hostile)
        except ValueError as exc:
            eid = tracker.capture_error(exc, ErrorContext(endpoint="/q/{id}", extra={"q": hostile,
                                                                                      "raw": b"\xff\xfe"}))
        assert tracker.flush(20)
        assert tracker.dropped["store_unavailable"] == 0
        event = tracker.store.get_event(eid)
        assert "DROP TABLE sizewise_error_groups" in event["message"]
        assert "\x00" not in event["message"]
        assert counts(postgres_url) == {"/q/{id}": 1}  # the table is still there
    finally:
        asyncio.run(tracker.shutdown())
