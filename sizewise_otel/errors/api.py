"""HTTP API: ``/errors/summary``, ``/errors/groups``, ``/errors/{error_id}`` and admin actions.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so SQL never blocks the event loop.
Unknown or malformed ids answer 404 JSON; bad query parameters 422 (FastAPI validation); a store
that cannot be reached 503 JSON.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from sizewise_otel.errors.context import ErrorContext, ErrorSeverity
from sizewise_otel.errors.fingerprint import GROUP_ID_RE
from sizewise_otel.errors.store import decode_cursor
from sizewise_otel.web.auth import require

if TYPE_CHECKING:
    from sizewise_otel.errors.tracker import ErrorTracker

EVENT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
READ_FLUSH_SECONDS = 2.0
Status = Literal["unresolved", "resolved", "ignored"]
Severity = Literal["low", "medium", "high", "critical"]
T = TypeVar("T")


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status


class DiagnosticError(RuntimeError):
    """Raised on purpose by ``POST /errors/diagnostics``."""


def build_router(tracker: ErrorTracker) -> APIRouter:
    router = APIRouter(prefix="/errors", tags=["errors"])
    viewer = Depends(require("viewer"))
    admin = Depends(require("admin"))

    def guarded(fn: Callable[[], T]) -> T:
        # Captures are stored by the writer thread: a read first waits (bounded) for what is queued,
        # so an error id answered a moment ago is found and counts include it.
        tracker.flush(READ_FLUSH_SECONDS)
        try:
            return fn()
        except HTTPException:
            raise
        except Exception as exc:
            raise HTTPException(503, detail=f"error store unavailable ({type(exc).__name__})") from None

    @router.get("/summary", dependencies=[viewer])
    def summary(window_hours: float = Query(24.0, gt=0, le=24 * 90)) -> dict[str, Any]:
        data = guarded(lambda: tracker.store.summary(time.time(), window_hours * 3600.0))
        data["pipeline"] = tracker.diagnostics()
        return data

    @router.get("/groups", dependencies=[viewer])
    def groups(status: Status | None = None, severity: Severity | None = None,
               since: datetime | None = Query(None, description="ISO 8601; groups last seen since then"),
               limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=200),
               ) -> dict[str, Any]:
        parsed_cursor = None
        if cursor:
            try:
                parsed_cursor = decode_cursor(cursor)
            except Exception:
                raise HTTPException(422, detail=[{"loc": ["query", "cursor"], "msg": "invalid cursor",
                                                  "type": "value_error"}]) from None
        since_ts = None
        if since is not None:
            since_ts = (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
        items, next_cursor = guarded(lambda: tracker.store.list_groups(
            status=status, severity=severity, since=since_ts, limit=limit, cursor=parsed_cursor))
        return {"groups": items, "next_cursor": next_cursor, "limit": limit}

    @router.get("/groups/{group_id}", dependencies=[viewer])
    def group(group_id: str) -> dict[str, Any]:
        if not GROUP_ID_RE.match(group_id):
            raise HTTPException(404, detail="no such error group")
        found = guarded(lambda: tracker.store.get_group(group_id))
        if found is None:
            raise HTTPException(404, detail="no such error group")
        return found

    @router.patch("/groups/{group_id}", dependencies=[admin])
    def update_group(group_id: str, body: GroupUpdate) -> dict[str, Any]:
        if not GROUP_ID_RE.match(group_id):
            raise HTTPException(404, detail="no such error group")
        updated = guarded(lambda: tracker.store.set_status(group_id, body.status))
        if updated is None:
            raise HTTPException(404, detail="no such error group")
        return updated

    @router.post("/diagnostics", dependencies=[admin])
    def diagnostics() -> dict[str, Any]:
        """Capture a synthetic error and report whether it reached the store."""
        try:
            raise DiagnosticError("sizewise-otel diagnostics: synthetic error")
        except DiagnosticError as exc:
            error_id = tracker.capture_error(
                exc, ErrorContext(endpoint="/errors/diagnostics", method="POST", tags={"synthetic": "true"}),
                ErrorSeverity.LOW, ["sizewise-diagnostics"])
        flushed = tracker.flush(5.0)
        event = guarded(lambda: tracker.store.get_event(error_id)) if flushed else None
        return {"error_id": error_id, "stored": event is not None,
                "group_id": event["group_id"] if event else None, "pipeline": tracker.diagnostics()}

    @router.post("/cleanup", dependencies=[admin])
    def cleanup() -> dict[str, Any]:
        """Apply retention (ERROR_RETENTION_HOURS) now."""
        return {"deleted": guarded(tracker.cleanup),
                "retention_hours": tracker.settings.error_retention_hours}

    @router.get("/{error_id}", dependencies=[viewer])
    def error(error_id: str) -> dict[str, Any]:
        if not EVENT_ID_RE.match(error_id):
            raise HTTPException(404, detail="no such error")
        event = guarded(lambda: tracker.store.get_event(error_id))
        if event is None:
            raise HTTPException(404, detail="no such error (unknown, or past the sample cap or retention)")
        group = guarded(lambda: tracker.store.get_group(event["group_id"]))
        return {"event": _render_event(event), "group": group}

    return router


def _render_event(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    out["timestamp"] = datetime.fromtimestamp(event["timestamp"], UTC).isoformat().replace("+00:00", "Z")
    return out
