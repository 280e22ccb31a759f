"""STUB (issue 3 replaces this): the public surface of the error tracker."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter

from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry


class ErrorSeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass
class ErrorContext:
    user_id: str | None = None
    endpoint: str | None = None
    method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ErrorTracker:
    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def capture_error(self, exception: BaseException | None = None, context: ErrorContext | None = None,
                      severity: ErrorSeverity | None = None, fingerprint: list[str] | None = None) -> str:
        self.telemetry.instrument("sizewise.errors").add(
            1, {"error.type": type(exception).__name__, "severity": str(severity or ErrorSeverity.HIGH)})
        return str(uuid.uuid4())

    def capture_request_exception(self, exc: BaseException, scope: dict[str, Any]) -> str:
        route = scope.get("route")
        return self.capture_error(exc, ErrorContext(endpoint=getattr(route, "path", None),
                                                    method=scope.get("method")))

    def capture_server_error_status(self, scope: dict[str, Any], status: int) -> None:
        pass

    def router(self) -> APIRouter:
        return APIRouter()


_tracker: ErrorTracker | None = None


def initialize_error_tracker(settings: Settings | None = None, telemetry: Telemetry | None = None) -> ErrorTracker:
    global _tracker
    if _tracker is None:
        telemetry = telemetry or get_telemetry(settings)
        _tracker = ErrorTracker(settings or telemetry.settings, telemetry)
    return _tracker


def get_error_tracker() -> ErrorTracker:
    return _tracker or initialize_error_tracker()
