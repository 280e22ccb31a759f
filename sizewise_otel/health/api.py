"""HTTP probes: ``/livez`` (the process), ``/readyz`` (critical dependencies), ``/health`` (all),
and ``/health/history`` (viewer). Every answer is ``application/health+json``: 200 for pass and
warn, 503 for fail. ``/health`` shows details to viewers (audited) and the status to anyone else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sizewise_otel.health.format import MEDIA_TYPE
from sizewise_otel.health.model import Status
from sizewise_otel.web.auth import KeyRing, _audit, optional_principal, require

if TYPE_CHECKING:
    from sizewise_otel.health.monitor import HealthMonitor

_HEADERS = {"cache-control": "no-store"}


def _respond(doc: dict[str, Any], code: int | None = None) -> JSONResponse:
    if code is None:
        code = 503 if doc.get("status") == Status.CRITICAL.ietf else 200
    return JSONResponse(doc, status_code=code, media_type=MEDIA_TYPE, headers=_HEADERS)


def health_router(monitor: HealthMonitor) -> APIRouter:
    def ensure_keyring(request: Request) -> None:
        # The monitor's router may be mounted without instrument(): read the keys from its settings.
        if getattr(request.app.state, "sizewise_keyring", None) is None:
            request.app.state.sizewise_keyring = KeyRing(monitor.settings)

    router = APIRouter(tags=["health"], dependencies=[Depends(ensure_keyring)])

    @router.get("/livez", summary="Liveness: the process only, never a dependency")
    async def livez() -> JSONResponse:
        return _respond(monitor.get_liveness(), 200)

    @router.get("/readyz", summary="Readiness: the critical dependencies")
    async def readyz() -> JSONResponse:
        return _respond(await monitor.get_readiness())

    @router.get("/health", summary="Every check; details for viewers, status for anyone else")
    async def health(request: Request) -> JSONResponse:
        principal = optional_principal(request)
        full = await monitor.get_overall_health()
        if principal.allows("viewer"):
            _audit(principal, request, "/health", 200)
            return _respond(full)
        return _respond({k: full[k] for k in ("status", "overall_status", "time")})

    @router.get("/health/history", summary="Transitions, uptime and trend per check (viewer)")
    async def history(check: str | None = None, limit: int = 50,
                      _principal: Any = Depends(require("viewer"))) -> JSONResponse:
        try:
            doc = monitor.get_history(check, limit=max(1, min(limit, 1000)))
        except KeyError:
            return JSONResponse({"detail": f"unknown health check {check!r}",
                                 "checks": sorted(monitor.checks)}, status_code=404)
        return JSONResponse(doc, headers=_HEADERS)

    return router
