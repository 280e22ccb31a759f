"""Health checks against real faults: stopped Redis and PostgreSQL, servers that accept and never
answer, slow and failing HTTP dependencies. Each asserts the status, the HTTP code, the content type
and that the answer comes although the dependency never would: within the check timeout plus a margin
far beyond any scheduling delay (a hung dependency would hold an unbounded check forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from sizewise_otel.health import HealthMonitor
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import get_telemetry
from tests.servers import Server

pytestmark = pytest.mark.integration

TIMEOUT = 0.5  # where a dependency must time out: a loaded machine only makes that likelier
UP_TIMEOUT = 3.0  # where a working dependency must be seen up (or slow, not timed out)
PATIENCE = 10.0  # the margin over a timeout: a loaded machine's delays, never a hung dependency's
HANG = 60.0  # a check timeout no test waits for


# --- fault servers ------------------------------------------------------------------------------

class HungServer:
    """Listens on 127.0.0.1, accepts every connection, never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                self.conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


class HttpDependency:
    """A tiny HTTP service whose /livez answers with a chosen delay, status and body."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.status = 200
        self.body = b'{"status": "pass"}'
        dep = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(dep.delay)
                self.send_response(dep.status)
                self.send_header("content-type", "application/health+json")
                self.send_header("content-length", str(len(dep.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(dep.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/livez"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_dep() -> Iterator[HttpDependency]:
    dep = HttpDependency()
    yield dep
    dep.close()


# --- helpers ------------------------------------------------------------------------------------

def monitor(timeout: float = TIMEOUT, **kwargs: Any) -> HealthMonitor:
    settings = load_settings(health_check_timeout_seconds=timeout, health_cache_ttl_seconds=0)
    # System checks are left out: a busy CI machine's CPU must not decide these tests.
    return HealthMonitor(settings, get_telemetry(settings), include_system=False, **kwargs)


@contextlib.asynccontextmanager
async def served(m: HealthMonitor) -> Any:
    app = FastAPI(telemetry={"metrics": False})  # not instrumented: keep it out of the shared registry
    app.include_router(m.router())
    await m.initialize()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c
    finally:
        await m.shutdown()


async def bounded_get(c: httpx.AsyncClient, path: str, timeout: float) -> httpx.Response:
    """GET that must answer within the check timeout plus PATIENCE (it fails, not hangs, if not)."""
    try:
        return await asyncio.wait_for(c.get(path), timeout + PATIENCE)
    except TimeoutError:
        pytest.fail(f"{path} did not answer within {timeout:g} s (the check timeout) + {PATIENCE:g} s")


def check(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return doc["checks"][key][0]


UP = ("healthy", "warning")  # a loaded CI machine may make a working dependency "slow" (warning)


async def wait_until(c: httpx.AsyncClient, key: str, health: tuple[str, ...], within: float = 30.0,
                     ) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        doc = (await c.get("/health")).json()
        if check(doc, key)["health"] in health or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.2)


def assert_health_json(r: httpx.Response, code: int) -> dict[str, Any]:
    assert r.status_code == code, r.text
    assert r.headers["content-type"] == "application/health+json"
    return r.json()


# --- Redis --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_redis_stopped_degrades_then_recovers(redis_srv: Server, redis_url: str, flavour: str) -> None:
    client: Any = redis.Redis.from_url(redis_url) if flavour == "sync" else redis.asyncio.Redis.from_url(redis_url)
    m = monitor(UP_TIMEOUT, redis=client)
    async with served(m) as c:
        doc = assert_health_json((await c.get("/health")), 200)
        assert check(doc, "redis:responseTime")["health"] in UP
        redis_srv.stop()
        try:
            doc = assert_health_json(await bounded_get(c, "/health", UP_TIMEOUT), 200)  # optional: warn
            entry = check(doc, "redis:responseTime")
            assert (entry["status"], entry["health"], entry["impact"]) == ("fail", "critical", "warning")
            assert entry["reason"] in ("error", "timeout")
            assert f"127.0.0.1:{redis_srv.port}" in entry["advice"] and "REDIS_URL" in entry["advice"]
            assert "cache bypass is active" in entry["advice"]
            assert doc["overall_status"] == "warning"
            assert doc["dependencies"]["cache"]["status"] == "unavailable"
            assert doc["dependencies"]["calculate"]["status"] == "degraded"
            assert (await c.get("/readyz")).status_code == 200
            assert (await c.get("/livez")).status_code == 200
        finally:
            redis_srv.start()
        doc = await wait_until(c, "redis:responseTime", UP)
        assert check(doc, "redis:responseTime")["health"] in UP
        transitions = m.get_history("redis")["checks"]["redis"]["transitions"]
        assert "critical" in [t["current"] for t in transitions]
        assert transitions[-1]["current"] in UP
    if flavour == "asyncio":
        await client.aclose()
    else:
        client.close()


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
async def test_redis_that_never_answers_times_out(hung: HungServer, flavour: str) -> None:
    url = f"redis://127.0.0.1:{hung.port}/0"
    client: Any = redis.Redis.from_url(url) if flavour == "sync" else redis.asyncio.Redis.from_url(url)
    async with served(monitor(redis=client)) as c:
        for _ in range(3):  # the second and third ask while the first PING is still stuck
            doc = assert_health_json(await bounded_get(c, "/health", TIMEOUT), 200)
            entry = check(doc, "redis:responseTime")
            assert (entry["health"], entry["reason"]) == ("critical", "timeout")
            assert "did not answer" in entry["advice"] and f"127.0.0.1:{hung.port}" in entry["advice"]
        assert (await c.get("/livez")).status_code == 200


# --- PostgreSQL ---------------------------------------------------------------------------------

async def test_postgres_stopped_fails_readiness_then_recovers(postgres: Server, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    m = monitor(UP_TIMEOUT, engine=engine)
    try:
        async with served(m) as c:
            doc = assert_health_json(await c.get("/health"), 200)
            assert check(doc, "database:responseTime")["health"] in UP
            assert (await c.get("/readyz")).status_code == 200
            postgres.stop(signal.SIGINT)  # fast shutdown: pooled connections are cut
            try:
                doc = assert_health_json(await bounded_get(c, "/health", UP_TIMEOUT), 503)
                entry = check(doc, "database:responseTime")
                assert (entry["status"], entry["health"], entry["impact"]) == ("fail", "critical", "critical")
                assert "DATABASE_URL" in entry["advice"] and f"127.0.0.1:{postgres.port}" in entry["advice"]
                assert doc["dependencies"]["calculate"]["status"] == "unavailable"
                r = await c.get("/readyz")
                assert_health_json(r, 503)
                assert r.json()["failing"] == ["database"]
                assert (await c.get("/livez")).status_code == 200
            finally:
                postgres.start()
            doc = await wait_until(c, "database:responseTime", UP)
            assert check(doc, "database:responseTime")["health"] in UP
            assert (await c.get("/readyz")).status_code == 200
    finally:
        engine.dispose()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_database_that_never_answers_times_out(hung: HungServer, flavour: str) -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:{hung.port}/db"
    engine: Any = sa.create_engine(url) if flavour == "sync" else create_async_engine(url)
    async with served(monitor(engine=engine)) as c:
        for path in ("/health", "/readyz", "/health"):
            assert_health_json(await bounded_get(c, path, TIMEOUT), 503)
        entry = check((await c.get("/health")).json(), "database:responseTime")
        assert (entry["health"], entry["reason"]) == ("critical", "timeout")
        assert "did not answer" in entry["advice"]


# --- HTTP dependencies --------------------------------------------------------------------------

async def test_http_dependency_that_never_answers_times_out(hung: HungServer) -> None:
    m = monitor(http_dependencies={"materials": f"http://127.0.0.1:{hung.port}/livez"})
    async with served(m) as c:
        doc = assert_health_json(await bounded_get(c, "/health", TIMEOUT), 200)  # non-critical by default
        entry = check(doc, "materials:responseTime")
        assert (entry["health"], entry["impact"], entry["reason"]) == ("critical", "warning", "timeout")
        assert doc["dependencies"]["materials"]["status"] == "unavailable"
        assert (await c.get("/readyz")).status_code == 200


async def test_slow_failing_and_degraded_http_dependency(http_dep: HttpDependency) -> None:
    m = monitor(UP_TIMEOUT, http_dependencies={"materials": http_dep.url})
    m.configure("materials", critical=True, readiness=True)
    key = "materials:responseTime"
    async with served(m) as c:
        doc = assert_health_json(await c.get("/health"), 200)
        assert check(doc, key)["health"] in UP and check(doc, key)["observedUnit"] == "ms"

        # answers, but slower than half the timeout (with 1.2 s to spare before the timeout)
        http_dep.delay = UP_TIMEOUT * 0.6
        doc = assert_health_json(await c.get("/health"), 200)
        assert (check(doc, key)["health"], check(doc, key)["reason"]) == ("warning", "slow")
        assert check(doc, key)["observedValue"] >= UP_TIMEOUT * 0.6 * 1000

        http_dep.delay = HANG  # too slow: the check gives up at the timeout
        doc = assert_health_json(await bounded_get(c, "/health", UP_TIMEOUT), 503)  # configured critical
        assert check(doc, key)["reason"] == "timeout"
        assert (await c.get("/readyz")).status_code == 503

        http_dep.delay, http_dep.status = 0.0, 500
        doc = assert_health_json(await c.get("/health"), 503)
        assert check(doc, key)["reason"] == "http_status"

        http_dep.status, http_dep.body = 200, b'{"status": "warn"}'
        doc = assert_health_json(await c.get("/health"), 200)
        assert check(doc, key)["health"] == "warning"


async def test_cached_results_spare_dependencies_under_load(http_dep: HttpDependency) -> None:
    hits = 0
    original = http_dep.httpd.RequestHandlerClass.do_GET

    def counting(handler: Any) -> None:
        nonlocal hits
        hits += 1
        original(handler)

    http_dep.httpd.RequestHandlerClass.do_GET = counting  # type: ignore[method-assign]
    settings = load_settings(health_check_timeout_seconds=UP_TIMEOUT, health_cache_ttl_seconds=HANG)
    m = HealthMonitor(settings, get_telemetry(settings), http_dependencies={"materials": http_dep.url},
                      include_system=False)
    async with served(m) as c:
        responses = await asyncio.gather(*(c.get("/health") for _ in range(50)))
        assert all(r.status_code == 200 for r in responses)
        ages = [check(r.json(), "materials:responseTime")["age_seconds"] for r in responses]
        assert max(ages) < HANG
    assert hits == 1


# --- liveness -----------------------------------------------------------------------------------

async def test_livez_answers_while_every_dependency_hangs(hung: HungServer) -> None:
    """/livez never waits for a dependency: it answers while a /health call is stuck on three that
    never answer (checks given HANG seconds, so /health cannot finish during the test)."""
    url = f"127.0.0.1:{hung.port}"
    # socket timeouts, so a check that blocked the event loop would show as a slow /livez, not a hang
    client = redis.Redis.from_url(f"redis://{url}/0", socket_timeout=HANG / 3)
    engine = sa.create_engine(f"postgresql+psycopg://u@{url}/db", connect_args={"connect_timeout": HANG / 3})
    m = monitor(HANG, redis=client, engine=engine, http_dependencies={"materials": f"http://{url}/livez"})
    async with served(m) as c:
        health = asyncio.create_task(c.get("/health"))
        deadline = time.monotonic() + PATIENCE
        while len(hung.conns) < 3 and time.monotonic() < deadline:  # every check is connected, waiting
            await asyncio.sleep(0.05)
        assert len(hung.conns) >= 3, f"only {len(hung.conns)} checks reached the hung server"
        try:
            try:
                assert_health_json(await asyncio.wait_for(c.get("/livez"), PATIENCE), 200)
            except TimeoutError:
                pytest.fail(f"/livez did not answer within {PATIENCE:g} s while the dependencies hang")
            assert not health.done()  # /health is still waiting for the dependencies
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
    client.close()
    engine.dispose()
