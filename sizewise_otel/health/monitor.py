"""STUB (issue 4 replaces this): the public surface of the health monitor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry


class HealthMonitor:
    def __init__(self, settings: Settings, telemetry: Telemetry, *, engine: Any = None,
                 redis: Any = None, http_dependencies: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def get_overall_health(self) -> dict[str, Any]:
        return {"overall_status": "healthy", "summary": {"healthy": 0, "warning": 0, "critical": 0}}

    def router(self) -> APIRouter:
        r = APIRouter()

        @r.get("/livez")
        async def livez() -> JSONResponse:
            return JSONResponse({"status": "pass"})

        @r.get("/readyz")
        async def readyz() -> JSONResponse:
            return JSONResponse({"status": "pass"})

        @r.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse(await self.get_overall_health())

        return r


_monitor: HealthMonitor | None = None


def initialize_health_monitor(settings: Settings | None = None, telemetry: Telemetry | None = None,
                              **kwargs: Any) -> HealthMonitor:
    global _monitor
    if _monitor is None:
        telemetry = telemetry or get_telemetry(settings)
        _monitor = HealthMonitor(settings or telemetry.settings, telemetry, **kwargs)
    return _monitor


def get_health_monitor() -> HealthMonitor:
    return _monitor or initialize_health_monitor()
