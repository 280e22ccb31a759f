"""Runs one service shape under ``instrument(app)`` and prints what the telemetry saw, as JSON.

Run by tests/unit/test_service_shapes.py in a fresh interpreter per fast-path mode (the process's
providers and views are built once, for one mode): ``python -m tests.unit.service_shapes_probe
{routes|nolifespan}``. The last stdout line is the JSON the tests assert on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, BackgroundTasks, FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from sizewise_otel import instrument
from sizewise_otel.settings import Settings

CHUNK_PAUSE = 0.15  # seconds between the streamed chunks
CHUNKS = 4


class SubAppError(Exception):
    """Raised inside the mounted sub-app."""


class BackgroundError(Exception):
    """Raised by a background task after the response was sent."""


def build_app(ran: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/sync/{n}")
    def sync_route(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/async/{n}")
    async def async_route(n: int) -> dict[str, int]:
        return {"n": n}

    router = APIRouter(prefix="/v1/items")

    @router.get("/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.include_router(router)

    sub = FastAPI()

    @sub.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    @sub.get("/fail/{n}")
    async def fail(n: int) -> None:
        raise SubAppError(f"sub-app failure {n}")

    app.mount("/sub", sub)

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["word"])

    app.mount("/plain", Starlette(routes=[Route("/echo/{word}", plain)]))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo:{text}")
        await websocket.close()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(CHUNKS):
                await asyncio.sleep(CHUNK_PAUSE)
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    def note(what: str) -> None:
        ran.append(what)

    def explode(what: str) -> None:
        ran.append(what)
        raise BackgroundError("background task failure")

    @app.post("/bg")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(note, "bg")
        return {"queued": True}

    @app.post("/bg-fail")
    async def background_fail(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(explode, "bg-fail")
        return {"queued": True}

    return app


def http_counts(text: str) -> dict[str, dict[str, float]]:
    """``http.route`` -> {"count", "sum", "status", "error"} from the duration histogram."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "http_server_request_duration_seconds":
            continue
        for s in family.samples:
            route = s.labels.get("http_route", "<none>")
            entry = out.setdefault(route, {"count": 0.0, "sum": 0.0})
            if s.name.endswith("_count"):
                entry["count"] += s.value
                entry["status"] = float(s.labels.get("http_response_status_code", 0))
                entry["error"] = s.labels.get("error_type", "")  # type: ignore[assignment]
            elif s.name.endswith("_sum"):
                entry["sum"] += s.value
    return out


def error_groups(http: TestClient, handle: Any, want: int) -> list[dict[str, Any]]:
    """The tracker's groups once ``want`` of them are stored (the writer thread stores them)."""
    deadline = time.monotonic() + 30
    groups: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        handle.tracker.flush(5.0)
        resp = http.get("/errors/groups")
        assert resp.status_code == 200, resp.text
        groups = resp.json()["groups"]
        if len(groups) >= want:
            break
        time.sleep(0.1)
    return [{k: g[k] for k in ("type", "route", "count")} for g in groups]


def settings() -> Settings:
    """A file-backed error store: the writer thread and the API's reader share it (``sqlite://`` is
    one database per connection)."""
    # Resource thresholds out of reach: on a loaded 2-core machine /health must not answer 503 here.
    limits = {f"{r}_{level}_percent": 100.0 for r in ("cpu", "memory", "disk") for level in ("warning", "critical")}
    return Settings(error_store_url=f"sqlite:///{tempfile.mkdtemp(prefix='shapes')}/errors.db", **limits)


def routes_shape() -> dict[str, Any]:
    ran: list[str] = []
    app = build_app(ran)
    handle = instrument(app, settings=settings())
    result: dict[str, Any] = {}
    with TestClient(app, raise_server_exceptions=False) as http:
        statuses = [http.get("/sync/1").status_code, http.get("/async/2").status_code,
                    http.get("/v1/items/3").status_code, http.get("/sub/hello/x").status_code,
                    http.get("/sub/fail/1").status_code, http.get("/sub/fail/2").status_code,
                    http.get("/plain/echo/y").text]
        total_before_ws = handle.stats.total
        with http.websocket_connect("/ws") as ws:
            ws.send_text("ping")
            result["ws_reply"] = ws.receive_text()
        result["ws_counted"] = handle.stats.total - total_before_ws
        started = time.perf_counter()
        body = http.get("/stream").text
        result["stream_client_seconds"] = time.perf_counter() - started
        result["stream_body"] = body
        statuses += [http.post("/bg").status_code, http.post("/bg-fail").status_code]
        result["statuses"] = statuses
        result["ran"] = ran
        result["stats"] = {"total": handle.stats.total, "errors": handle.stats.errors}
        result["http"] = http_counts(http.get("/metrics").text)
        result["groups"] = error_groups(http, handle, 2)
    return result


def nolifespan_shape() -> dict[str, Any]:
    ran: list[str] = []
    app = build_app(ran)
    handle = instrument(app, settings=settings())
    http = TestClient(app, raise_server_exceptions=False)  # no ``with``: the lifespan never runs
    result: dict[str, Any] = {"statuses": [http.get("/sync/1").status_code, http.get("/sub/fail/1").status_code]}
    result["started"] = handle._started
    result["groups"] = error_groups(http, handle, 1)
    result["health"] = http.get("/health").status_code
    result["http"] = http_counts(http.get("/metrics").text)
    return result


if __name__ == "__main__":
    from sizewise_otel.fastpath import enabled

    shape = {"routes": routes_shape, "nolifespan": nolifespan_shape}[sys.argv[1]]
    print(json.dumps({**shape(), "fastpath": enabled()}))  # SDKs without the internals take the public path
