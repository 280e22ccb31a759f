from __future__ import annotations

import anyio
import httpx
from fastapi import FastAPI

from sizewise_otel import instrument
from sizewise_otel.settings import Settings


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    return app


def test_instrument_twice_is_harmless() -> None:
    app = _app()
    settings = Settings(error_store_url="sqlite://")
    first = instrument(app, settings=settings)
    middleware = list(app.user_middleware)
    routes = len(app.router.routes)
    second = instrument(app, settings=settings)
    assert first is second
    assert list(app.user_middleware) == middleware and len(app.router.routes) == routes


def test_metrics_is_an_exact_route_and_probes_are_not_measured() -> None:
    app = _app()
    instrument(app, settings=Settings(error_store_url="sqlite://"))
    async def run() -> tuple[httpx.Response, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            metrics = await c.get("/metrics", follow_redirects=False)
            await c.get("/livez")
            await c.get("/items/42")
            after = (await c.get("/metrics")).text
            return metrics, after

    metrics, text = anyio.run(run)
    assert metrics.status_code == 200  # served in place: no 307 to /metrics/
    assert metrics.headers["content-type"].startswith("text/plain")
    # Matched by value: other tests' plain FastAPI apps record through FastAPI's native telemetry
    # (scope "fastapi", no http.route on some series) into the same family, and the exporter names a
    # family's labels after its first stream, so a key may sit beside another stream's value.
    http = [ln for ln in text.splitlines() if ln.startswith("http_server")]
    assert any('"/items/{item_id}"' in ln for ln in http)
    assert not [ln for ln in http if '"/livez"' in ln or '"/metrics"' in ln]
