"""Health checks against real faults: stopped Redis and PostgreSQL, servers that accept and never
answer, slow and failing HTTP dependencies. Each asserts the status, the HTTP code, the content type
and that the answer comes within the check timeout plus a small margin.
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

TIMEOUT = 0.5
MARGIN = 0.4  # scheduling, thread start, JSON rendering on a busy CI machine


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

def monitor(**kwargs: Any) -> HealthMonitor:
    settings = load_settings(health_check_timeout_seconds=TIMEOUT, health_cache_ttl_seconds=0)
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


async def timed_get(c: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = await c.get(path)
    return r, time.perf_counter() - t0


def check(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return doc["checks"][key][0]


UP = ("healthy", "warning")  # a loaded CI machine may make a working dependency "slow" (warning)


async def wait_until(c: httpx.AsyncClient, key: str, health: tuple[str, ...], within: float = 10.0,
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
    m = monitor(redis=client)
    async with served(m) as c:
        doc = assert_health_json((await c.get("/health")), 200)
        assert check(doc, "redis:responseTime")["health"] in UP
        redis_srv.stop()
        try:
            r, elapsed = await timed_get(c, "/health")
            doc = assert_health_json(r, 200)  # the cache is optional: warn, not fail
            assert elapsed < TIMEOUT + MARGIN
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
            r, elapsed = await timed_get(c, "/health")
            doc = assert_health_json(r, 200)
            assert elapsed < TIMEOUT + MARGIN, elapsed
            entry = check(doc, "redis:responseTime")
            assert (entry["health"], entry["reason"]) == ("critical", "timeout")
            assert "did not answer" in entry["advice"] and f"127.0.0.1:{hung.port}" in entry["advice"]
        r, elapsed = await timed_get(c, "/livez")
        assert r.status_code == 200 and elapsed < 0.1


# --- PostgreSQL ---------------------------------------------------------------------------------

async def test_postgres_stopped_fails_readiness_then_recovers(postgres: Server, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    m = monitor(engine=engine)
    try:
        async with served(m) as c:
            doc = assert_health_json(await c.get("/health"), 200)
            assert check(doc, "database:responseTime")["health"] in UP
            assert (await c.get("/readyz")).status_code == 200
            postgres.stop(signal.SIGINT)  # fast shutdown: pooled connections are cut
            try:
                r, elapsed = await timed_get(c, "/health")
                doc = assert_health_json(r, 503)
                assert elapsed < TIMEOUT + MARGIN
                entry = check(doc, "database:responseTime")
                assert (entry["status"], entry["health"], entry["impact"]) == ("fail", "critical", "critical")
                assert "DATABASE_URL" in entry["advice"] and f"127.0.0.1:{postgres.port}" in entry["advice"]
                assert doc["dependencies"]["calculate"]["status"] == "unavailable"
                r = await c.get("/readyz")
                assert_health_json(r, 503)
                assert r.json()["failing"] == ["database"]
                r, elapsed = await timed_get(c, "/livez")
                assert r.status_code == 200 and elapsed < 0.1
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
            r, elapsed = await timed_get(c, path)
            assert_health_json(r, 503)
            assert elapsed < TIMEOUT + MARGIN, (path, elapsed)
        entry = check((await c.get("/health")).json(), "database:responseTime")
        assert (entry["health"], entry["reason"]) == ("critical", "timeout")
        assert "did not answer" in entry["advice"]


# --- HTTP dependencies --------------------------------------------------------------------------

async def test_http_dependency_that_never_answers_times_out(hung: HungServer) -> None:
    m = monitor(http_dependencies={"materials": f"http://127.0.0.1:{hung.port}/livez"})
    async with served(m) as c:
        r, elapsed = await timed_get(c, "/health")
        doc = assert_health_json(r, 200)  # HTTP dependencies are non-critical by default
        assert elapsed < TIMEOUT + MARGIN
        entry = check(doc, "materials:responseTime")
        assert (entry["health"], entry["impact"], entry["reason"]) == ("critical", "warning", "timeout")
        assert doc["dependencies"]["materials"]["status"] == "unavailable"
        assert (await c.get("/readyz")).status_code == 200


async def test_slow_failing_and_degraded_http_dependency(http_dep: HttpDependency) -> None:
    m = monitor(http_dependencies={"materials": http_dep.url})
    m.configure("materials", critical=True, readiness=True)
    key = "materials:responseTime"
    async with served(m) as c:
        doc = assert_health_json(await c.get("/health"), 200)
        assert check(doc, key)["health"] in UP and check(doc, key)["observedUnit"] == "ms"

        http_dep.delay = TIMEOUT * 0.7  # answers, but slower than half the timeout
        doc = assert_health_json(await c.get("/health"), 200)
        assert (check(doc, key)["health"], check(doc, key)["reason"]) == ("warning", "slow")
        assert check(doc, key)["observedValue"] >= TIMEOUT * 0.7 * 1000

        http_dep.delay = TIMEOUT * 4  # too slow: the check gives up at the timeout
        r, elapsed = await timed_get(c, "/health")
        doc = assert_health_json(r, 503)  # configured critical
        assert elapsed < TIMEOUT + MARGIN
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
    settings = load_settings(health_check_timeout_seconds=TIMEOUT, health_cache_ttl_seconds=30)
    m = HealthMonitor(settings, get_telemetry(settings), http_dependencies={"materials": http_dep.url},
                      include_system=False)
    async with served(m) as c:
        responses = await asyncio.gather(*(c.get("/health") for _ in range(50)))
        assert all(r.status_code == 200 for r in responses)
        ages = [check(r.json(), "materials:responseTime")["age_seconds"] for r in responses]
        assert max(ages) < 30
    assert hits == 1
