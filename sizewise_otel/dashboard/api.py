"""HTTP routes of the dashboard: JSON API (viewer role) and the self-refreshing HTML page.

The page itself is a static shell with no data, served without credentials so a browser can load
it; every data call it makes goes through the viewer-protected JSON API (the page sends the key
given as ``#key=...`` in its URL, kept in the browser's session storage).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from sizewise_otel.web.auth import require

if TYPE_CHECKING:
    from sizewise_otel.dashboard.service import PerformanceDashboard

Range = Literal["1h", "24h", "7d"]
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def asset(name: str) -> str:
    return resources.files("sizewise_otel.dashboard").joinpath("static", name).read_text("utf-8")


def build_router(dashboard: PerformanceDashboard) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    viewer = [Depends(require("viewer"))]

    @router.get("/dashboard", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(asset("dashboard.html"), headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in ASSETS:
            return JSONResponse({"detail": f"no asset {name!r}"}, status_code=404)
        return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard/overview", dependencies=viewer)
    async def overview() -> JSONResponse:
        return JSONResponse(await dashboard.get_dashboard_overview())

    @router.get("/dashboard/widgets", dependencies=viewer)
    async def list_widgets() -> JSONResponse:
        return JSONResponse({"widgets": await dashboard.list_widgets()})

    @router.get("/dashboard/widget/{widget_id}", dependencies=viewer)
    async def widget_data(widget_id: str, range: Range = Query("1h")) -> JSONResponse:
        try:
            return JSONResponse(await dashboard.get_widget_data(widget_id, range))
        except KeyError:
            raise HTTPException(404, detail=f"unknown widget {widget_id!r}") from None

    @router.get("/dashboard/metrics/{metric_name}", dependencies=viewer)
    async def metric_history(metric_name: str, range: Range = Query("1h")) -> JSONResponse:
        try:
            return JSONResponse(await dashboard.get_metric_history(metric_name, range))
        except KeyError:
            raise HTTPException(404, detail=f"unknown metric {metric_name!r}") from None

    return router
