"""STUB (issue 5 replaces this): the public surface of the performance dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry


class PerformanceDashboard:
    def __init__(self, settings: Settings, telemetry: Telemetry, *, monitor: Any = None,
                 tracker: Any = None) -> None:
        self.settings = settings
        self.telemetry = telemetry

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def get_dashboard_overview(self) -> dict[str, Any]:
        return {}

    async def get_widget_data(self, widget_id: str) -> dict[str, Any]:
        return {}

    def router(self) -> APIRouter:
        return APIRouter()


_dashboard: PerformanceDashboard | None = None


def initialize_performance_dashboard(settings: Settings | None = None, telemetry: Telemetry | None = None,
                                     **kwargs: Any) -> PerformanceDashboard:
    global _dashboard
    if _dashboard is None:
        telemetry = telemetry or get_telemetry(settings)
        _dashboard = PerformanceDashboard(settings or telemetry.settings, telemetry, **kwargs)
    return _dashboard


def get_performance_dashboard() -> PerformanceDashboard:
    return _dashboard or initialize_performance_dashboard()
