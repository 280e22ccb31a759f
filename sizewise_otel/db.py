"""SQLAlchemy: OTel spans plus the stable ``db.client.operation.duration`` histogram and pool gauges.

The OTel SQLAlchemy instrumentation emits spans and pool usage but no operation-duration metric,
so it is recorded here from cursor events. Attributes are bounded: the operation is the SQL verb
from a fixed set, never the statement text.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from sizewise_otel.telemetry import Telemetry

_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK", "CREATE",
                    "DROP", "ALTER", "WITH", "PRAGMA"})
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mssql": "microsoft.sql_server",
            "oracle": "oracle"}
_MARK = "_sizewise_instrumented"


def operation_name(statement: str) -> str:
    head = statement.lstrip()[:16].split(None, 1)
    verb = head[0].upper() if head else ""
    return verb if verb in _VERBS else "OTHER"


def sync_engine_of(engine: Any) -> Engine:
    return getattr(engine, "sync_engine", engine)


def instrument_engine(engine: Any, telemetry: Telemetry) -> Engine:
    """Instrument a sync ``Engine`` or an ``AsyncEngine``; a second call is a no-op."""
    sync_engine = sync_engine_of(engine)
    if getattr(sync_engine, _MARK, False):
        return sync_engine
    setattr(sync_engine, _MARK, True)
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(
        engine=sync_engine, tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider, enable_commenter=False,
    )
    histogram = telemetry.instrument("db.client.operation.duration")
    system = _SYSTEMS.get(sync_engine.dialect.name, sync_engine.dialect.name)
    cache: dict[tuple[str, str | None], dict[str, str]] = {}

    def attrs(op: str, error: str | None) -> dict[str, str]:
        key = (op, error)
        found = cache.get(key)
        if found is None:
            found = {"db.system.name": system, "db.operation.name": op}
            if error:
                found["error.type"] = error
            cache[key] = found
        return found

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info.setdefault("_sw_t0", []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        stack = conn.info.get("_sw_t0")
        if stack:
            histogram.record(time.perf_counter() - stack.pop(), attrs(operation_name(statement), None))

    @event.listens_for(sync_engine, "handle_error")
    def _error(ctx: Any) -> None:
        conn = ctx.connection
        stack = conn.info.get("_sw_t0") if conn is not None else None
        if stack:
            err = type(ctx.original_exception).__name__
            histogram.record(time.perf_counter() - stack.pop(),
                             attrs(operation_name(ctx.statement or ""), err))

    pool = sync_engine.pool

    def pool_obs() -> list[tuple[float, dict[str, str]]]:
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        idle = getattr(pool, "checkedin", lambda: 0)()
        size = getattr(pool, "size", lambda: 0)()
        overflow = getattr(pool, "_max_overflow", 0)
        return [(float(checked_out), {"state": "used"}), (float(idle), {"state": "idle"}),
                (float(size + max(overflow, 0)), {"state": "max"})]

    telemetry.observe("sizewise.db.pool.connections", pool_obs)
    return sync_engine
