"""A real app (``instrument(app, engine=, redis=)`` served by uvicorn on 127.0.0.1) with dead
dependencies: start-up does not wait for them, ``/livez`` answers, ``/health`` answers within the
timeout and names the problem; calculations keep working with the cache down (bypass) and use the
cache again when Redis returns. Time bounds compare with what waiting on a dead dependency would
cost (a timeout, or forever), with margins no loaded machine reaches.
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
from sizewise_otel.instruments.cache import InstrumentedCache
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import get_telemetry
from tests.integration.test_health_faults import HungServer
from tests.servers import Server, free_port

pytestmark = pytest.mark.integration

PATIENCE = 10.0  # beyond any answer these tests expect on a loaded machine; below a hang


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
    while time.perf_counter() - t0 < 60:
        with contextlib.suppress(httpx.TransportError):
            if _client.get(f"{base}/livez", timeout=0.5).status_code == 200:
                started = time.perf_counter() - t0
                break
        time.sleep(0.02)
    assert started is not None, "the app did not start within 60 s"
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
            assert started < PATIENCE, f"start-up took {started:.2f}s"
            r, elapsed = timed(f"{base}/livez")
            assert r.status_code == 200 and elapsed < PATIENCE
            assert r.headers["content-type"] == "application/health+json"
            r, elapsed = timed(f"{base}/health")
            assert elapsed < 2.0 + PATIENCE, elapsed  # the check timeout, not the hung server's forever
            assert r.status_code in (200, 503) and r.headers["content-type"] == "application/health+json"
            doc = r.json()
            entry = doc["checks"]["redis:responseTime"][0]
            assert (entry["health"], entry["reason"]) == ("critical", "timeout")
            problem = next(p for p in doc["recommendations"] if p["check"] == "redis")
            assert "cache" in problem["affects"] and "cache bypass is active" in problem["advice"]
            assert f"127.0.0.1:{hung.port}" in problem["advice"]
            assert doc["dependencies"]["cache"]["status"] == "unavailable"
            if r.status_code == 503:  # only the host or a starved event loop may make it fail
                assert all(p["check"] in ("memory", "disk", "event_loop")
                           for p in doc["recommendations"] if p["impact"] == "critical")
            assert timed(f"{base}/readyz")[0].status_code == 200  # the cache is optional
            r, elapsed = timed(f"{base}/calculate")  # bypassed on the client's 0.2 s socket timeout
            assert r.status_code == 200 and r.json()["cached"] is False and elapsed < PATIENCE
    finally:
        hung.close()
        engine.dispose()


def test_database_that_never_answers_does_not_hang_startup() -> None:
    hung = HungServer()
    engine = sa.create_engine(f"postgresql+psycopg://u@127.0.0.1:{hung.port}/db")
    # A start-up that waited for the database would take this check timeout (psycopg itself would
    # wait forever), so it could not be live within PATIENCE.
    timeout = 3 * PATIENCE
    try:
        with serve(build_app(engine=engine, redis_client=None, timeout=timeout)) as (base, started):
            assert started < PATIENCE, f"start-up took {started:.2f}s"
            r, elapsed = timed(f"{base}/livez")
            assert r.status_code == 200 and elapsed < PATIENCE
            # The database now fails at once (connections cut) instead of in `timeout` seconds:
            # readiness reports it from the check, without this test waiting the timeout out.
            hung.close()
            deadline = time.monotonic() + PATIENCE
            while (r := _client.get(f"{base}/readyz")).status_code != 503 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert r.status_code == 503 and r.json()["failing"] == ["database"]
            r = _client.get(f"{base}/health")
            assert r.status_code == 503
            assert r.json()["dependencies"]["calculate"]["status"] == "unavailable"
    finally:
        hung.close()
        engine.dispose()


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
