"""The "materials" service: a second, tiny service the demo calls over HTTP (the service mesh)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

# Absolute roughness in feet (ASHRAE Fundamentals, Duct Design chapter).
ROUGHNESS_FT: dict[str, float] = {
    "galvanized_steel": 0.0003,
    "aluminum": 0.00015,
    "stainless_steel": 0.00015,
    "pvc": 0.0000015,
    "fibrous_glass": 0.003,
    "flexible_duct": 0.003,
    "concrete": 0.004,
}


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
