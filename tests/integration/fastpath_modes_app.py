"""Run in a fresh interpreter by test_fastpath_modes: one instrumented app, fixed traffic, the /metrics text.

``python -m tests.integration.fastpath_modes_app REDIS_URL`` prints a JSON object: the exposition
and which path the seam chose. The traffic covers the HTTP server (routes, 404, a handled 5xx, a
mounted sub-app), SQLAlchemy (SQLite: selects, inserts, a failing statement) and Redis (the cache's
hits, misses and sets, traced).
"""

from __future__ import annotations

import json
import sys
import uuid

import anyio
import httpx
import redis
from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

from sizewise_otel import instrument
from sizewise_otel.fastpath import status
from sizewise_otel.instruments.cache import InstrumentedCache
from sizewise_otel.settings import Settings


def build(redis_url: str) -> tuple[FastAPI, object]:
    app = FastAPI()
    sub = FastAPI()
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    client = redis.Redis.from_url(redis_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))

    handle = instrument(app, engine=engine, redis=client,
                        settings=Settings(error_store_url="sqlite://", otel_traces_sampler="always_on",
                                          otel_exporter_otlp_endpoint=""))
    cache = InstrumentedCache(handle.telemetry, client)
    prefix = uuid.uuid4().hex

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        key = f"{prefix}:item:{item_id}"  # per run: each run starts with misses
        if cache.get(key) is None:
            cache.set(key, b"1")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO items (name) VALUES (:n)"), {"n": str(item_id)})
            count = conn.execute(text("SELECT count(*) FROM items")).scalar()
        return {"id": item_id, "count": count}

    @app.get("/broken")
    def broken() -> dict:
        with engine.begin() as conn:
            try:
                conn.execute(text("SELECT * FROM no_such_table"))
            except Exception:
                raise HTTPException(status_code=503, detail="store down") from None
        return {}

    @sub.get("/ping/{n}")
    def ping(n: int) -> dict:
        return {"n": n}

    app.mount("/sub", sub)
    return app, handle


async def drive(app: FastAPI) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for i in (1, 2, 1, 3, 1):
            assert (await c.get(f"/items/{i}")).status_code == 200
        assert (await c.get("/items/x")).status_code == 422
        assert (await c.get("/broken")).status_code == 503
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.post("/items/1")).status_code == 405
        assert (await c.get("/sub/ping/7")).status_code == 200
        return (await c.get("/metrics")).text


def main() -> None:
    app, _handle = build(sys.argv[1])
    metrics = anyio.run(drive, app)
    found = status()
    print("RESULT " + json.dumps({"fastpath": found.enabled, "reason": found.reason, "metrics": metrics}),
          flush=True)


if __name__ == "__main__":
    main()
