"""STUB (issue 6 replaces this): embedded alert evaluation when no Prometheus is deployed."""

from __future__ import annotations

from fastapi import APIRouter

from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry


class AlertEvaluator:
    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def router(self) -> APIRouter:
        return APIRouter()
