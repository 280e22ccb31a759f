"""A real app (``instrument(app, engine=, redis=)`` served by uvicorn on 127.0.0.1) with dead
dependencies: start-up does not wait for them, ``/livez`` answers at once, ``/health`` answers
within the timeout and names the problem; calculations keep working with the cache down (bypass)
and use the cache again when Redis returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from redis.backoff import NoBackoff
from redis.retry import Retry

import sizewise_otel
from sizewise_otel.cache import InstrumentedCache
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import get_telemetry
from tests.integration.test_health_faults import HungServer
from tests.servers import Server, free_port

pytestmark = pytest.mark.integration


def build_app(*, engine: Any, redis_client: Any, timeout: float = 2.0) -> FastAPI:
    settings = load_settings(health_check_timeout_seconds=timeout, health_cache_ttl_seconds=5,
                             sizewise_api_keys="")
    app = FastAPI()
    cache = InstrumentedCache(get_telemetry(settings), redis_client, ttl_seconds=60)

    @app.get("/calculate")
    def calculate(cfm: float = 1200, velocity: float = 800) -> dict[str, Any]:
        key = "duct:" + hashlib.sha256(f"{cfm}:{velocity}".encode()).hexdigest()[:16]
        hit = cache.get(key)
        if hit is not None:
            return {"area_sqft": float(hit), "cached": True}
        area = cfm / velocity
        with engine.connect() as conn:  # calculations need the database
            conn.execute(sa.text("SELECT 1"))
        cache.set(key, str(area).encode())
        return {"area_sqft": area, "cached": False}

    sizewise_otel.instrument(app, engine=engine, redis=redis_client, settings=settings)
    return app


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[tuple[str, float]]:
    """Run uvicorn in a thread; yield (base URL, seconds until /livez first answered 200)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    base = f"http://127.0.0.1:{port}"
    started = None
    while time.perf_counter() - t0 < 10:
        with contextlib.suppress(httpx.TransportError):
            if _client.get(f"{base}/livez", timeout=0.5).status_code == 200:
                started = time.perf_counter() - t0
                break
        time.sleep(0.02)
    assert started is not None, "the app did not start within 10 s"
    try:
        yield base, started
    finally:
        server.should_exit = True
        thread.join(10)


_client = httpx.Client(timeout=10)  # reused: building a client per request costs ~0.1 s of CPU


def timed(url: str) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = _client.get(url)
    return r, time.perf_counter() - t0


def test_redis_that_never_answers_does_not_hang_startup(tmp_path: Path) -> None:
    """The issue's 'done when': REDIS at a port that accepts and never answers."""
    hung = HungServer()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    # the app's client has socket timeouts and no retries, as a deployment's should: requests then
    # bypass the cache quickly (redis-py's default retries add seconds per operation)
    client = redis.Redis(host="127.0.0.1", port=hung.port, socket_timeout=0.2, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
    try:
        with serve(build_app(engine=engine, redis_client=client)) as (base, started):
            assert started < 2.0, f"start-up took {started:.2f}s"
            r, elapsed = timed(f"{base}/livez")
            assert r.status_code == 200 and elapsed < 0.2
            assert r.headers["content-type"] == "application/health+json"
            r, elapsed = timed(f"{base}/health")
            assert elapsed < 3.0, elapsed
            assert r.status_code in (200, 503) and r.headers["content-type"] == "application/health+json"
            doc = r.json()
            entry = doc["checks"]["redis:responseTime"][0]
            assert (entry["health"], entry["reason"]) == ("critical", "timeout")
            problem = next(p for p in doc["recommendations"] if p["check"] == "redis")
            assert "cache" in problem["affects"] and "cache bypass is active" in problem["advice"]
            assert f"127.0.0.1:{hung.port}" in problem["advice"]
            assert doc["dependencies"]["cache"]["status"] == "unavailable"
            if r.status_code == 503:  # only a system check (a saturated CI CPU) may make it fail
                assert all(p["check"] in ("cpu", "memory", "disk", "event_loop")
                           for p in doc["recommendations"] if p["impact"] == "critical")
            assert timed(f"{base}/readyz")[0].status_code == 200  # the cache is optional
            r, elapsed = timed(f"{base}/calculate")
            assert r.status_code == 200 and r.json()["cached"] is False and elapsed < 1.5
    finally:
        hung.close()
        engine.dispose()


def test_database_that_never_answers_does_not_hang_startup() -> None:
    hung = HungServer()
    engine = sa.create_engine(f"postgresql+psycopg://u@127.0.0.1:{hung.port}/db")
    timeout = 4.0  # a start-up that waited for the database would take at least this long
    try:
        with serve(build_app(engine=engine, redis_client=None, timeout=timeout)) as (base, started):
            assert started < timeout / 2, f"start-up took {started:.2f}s"
            r, elapsed = timed(f"{base}/livez")
            assert r.status_code == 200 and elapsed < 0.2
            r, elapsed = timed(f"{base}/readyz")
            assert r.status_code == 503 and elapsed < timeout + 0.5
            assert r.json()["failing"] == ["database"]
            r, elapsed = timed(f"{base}/health")
            assert r.status_code == 503 and elapsed < timeout + 0.5
            assert r.json()["dependencies"]["calculate"]["status"] == "unavailable"
    finally:
        hung.close()


def test_cache_down_bypass_and_recovery(redis_srv: Server, redis_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                  retry=Retry(NoBackoff(), 0))
    try:
        with serve(build_app(engine=engine, redis_client=client)) as (base, _):
            assert _client.get(f"{base}/calculate").json()["cached"] is False
            assert _client.get(f"{base}/calculate").json()["cached"] is True
            redis_srv.stop()
            try:
                for _ in range(2):  # bypass: answered, from the calculation, not the cache
                    r = _client.get(f"{base}/calculate")
                    assert r.status_code == 200 and r.json()["cached"] is False
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    doc = _client.get(f"{base}/health").json()
                    if doc["checks"]["redis:responseTime"][0]["health"] == "critical":
                        break
                    time.sleep(0.5)
                assert doc["checks"]["redis:responseTime"][0]["health"] == "critical"
                assert _client.get(f"{base}/readyz").status_code == 200
            finally:
                redis_srv.start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                doc = _client.get(f"{base}/health").json()
                if doc["checks"]["redis:responseTime"][0]["health"] != "critical":
                    break
                time.sleep(0.5)
            assert doc["checks"]["redis:responseTime"][0]["health"] != "critical"
            _client.get(f"{base}/calculate")
            assert _client.get(f"{base}/calculate").json()["cached"] is True
    finally:
        client.close()
        engine.dispose()
