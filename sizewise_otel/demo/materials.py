"""The "materials" service: a second, tiny service the demo calls over HTTP (the service mesh)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sizewise_otel.demo.hvac import MATERIAL_ROUGHNESS_FT

# One roughness table: the calculations and the service that serves it agree.
ROUGHNESS_FT: dict[str, float] = dict(MATERIAL_ROUGHNESS_FT)


def create_materials_app() -> FastAPI:
    # In the demo this service shares the process with the HVAC service; its own metrics would
    # land in the same registry under the same names, so only its spans are kept.
    app = FastAPI(title="SizeWise materials", version="0.1.0", telemetry={"metrics": False})

    @app.get("/materials/{name}")
    async def material(name: str) -> JSONResponse:
        if name not in ROUGHNESS_FT:
            return JSONResponse({"detail": f"unknown material {name!r}"}, status_code=404)
        return JSONResponse({"name": name, "roughness_ft": ROUGHNESS_FT[name]})

    @app.get("/livez")
    async def livez() -> JSONResponse:
        return JSONResponse({"status": "pass"})

    return app
