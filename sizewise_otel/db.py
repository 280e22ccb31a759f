"""SQLAlchemy: DB CLIENT spans, the stable ``db.client.operation.duration`` histogram and pool gauges.

A lean wrapper of the engine dialect's ``do_execute`` family replaces the contrib
``SQLAlchemyInstrumentor`` and the cursor-event listeners (see docs/performance.md and
:class:`_DialectTracer`): one plain function call per statement records both the span and the
metric.

- **Spans** follow the OTel semantics: a CLIENT span per statement, a child of the current span,
  the SDK's sampler deciding. Under a valid, non-sampled parent that a parent-based sampler drops
  anyway (the 90 % of requests a 10 % ratio leaves out), no span is started at all; a statement
  outside any request is a root span and goes through the ratio sampler like any other root.
  Attributes (``db.system.name``, ``db.namespace``, ``db.operation.name``, ``server.address``,
  ``server.port``, ``db.query.text``) are only built when the span records: the connection part
  once per engine, the statement part once per distinct statement (cached, bounded).
  ``db.query.text`` is the parameterized statement SQLAlchemy sends (bound values never appear)
  with any inline string or numeric literal replaced by ``?``.
- **Metric**: the operation is the SQL verb from a fixed set, never the statement text; the
  histogram is the HTTP layer's lean aggregation when the provider allows it (one bisect and four
  additions under a lock per statement), the SDK instrument otherwise.
"""

from __future__ import annotations

import re
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy.engine import Engine

from sizewise_otel.spangate import SpanGate, current_span
from sizewise_otel.telemetry import SCOPE, Telemetry

__all__ = ["SpanGate", "current_span", "instrument_engine", "operation_name", "sanitize_sql"]

_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK", "CREATE",
                    "DROP", "ALTER", "WITH", "PRAGMA"})
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mssql": "microsoft.sql_server",
            "oracle": "oracle"}
_MARK = "_sizewise_instrumented"
# Distinct statements whose span name / sanitized text are cached per engine; past this the
# listener still works and computes them per call (only for sampled spans).
MAX_CACHED_STATEMENTS = 1024
# Inline literals: quoted strings and numbers that are not part of an identifier or a positional
# placeholder ($1, :1, %(name_1)s keep their digits).
_LITERALS = re.compile(r"'(?:[^']|'')*'|(?<![\w$:.%])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b")
_MAX_QUERY_TEXT = 2048


def operation_name(statement: str) -> str:
    head = statement.lstrip()[:16].split(None, 1)
    verb = head[0].upper() if head else ""
    return verb if verb in _VERBS else "OTHER"


def sanitize_sql(statement: str) -> str:
    """``statement`` with inline string and numeric literals replaced by ``?`` (bounded length)."""
    text = _LITERALS.sub("?", statement)
    return text if len(text) <= _MAX_QUERY_TEXT else text[:_MAX_QUERY_TEXT - 3] + "..."


def sync_engine_of(engine: Any) -> Engine:
    return getattr(engine, "sync_engine", engine)


def error_type(exc: BaseException) -> str:
    """``error.type`` for a failed operation: the exception's class name (bounded by code)."""
    return type(exc).__name__


def contrib_tracer(tracer_provider: Any, package: str) -> trace.Tracer:
    """A tracer under the contrib instrumentor's scope, so traces look the same in zero-code mode."""
    try:
        import importlib

        from opentelemetry.instrumentation._semconv import _get_schema_url, _StabilityMode

        version = importlib.import_module(f"opentelemetry.instrumentation.{package}.version").__version__
        return tracer_provider.get_tracer(f"opentelemetry.instrumentation.{package}", version,
                                          schema_url=_get_schema_url(_StabilityMode.DATABASE))
    except Exception:  # contrib package missing or changed: our own scope
        return tracer_provider.get_tracer(f"{SCOPE}.{package}")


class Recorder:
    """One histogram's measurements with cached attribute sets: lean aggregation or SDK instrument.

    Exemplars keep the SDK's semantics: under the default trace-based filter a measurement made
    under a sampled span carries an exemplar (here: the operation's own CLIENT span), others do
    not, so the non-sampled path stays a plain record.
    """

    def __init__(self, telemetry: Telemetry, name: str) -> None:
        from sizewise_otel.catalog import signal

        sig = signal(name)
        self.name = name
        self.instrument = telemetry.instrument(name)
        self.lean = None
        try:
            from sizewise_otel.httpserver import lean_histogram

            self.lean = lean_histogram(telemetry.meter_provider, name, sig.unit, sig.description,
                                       sig.buckets or (), (SCOPE, telemetry.settings.service_version, None))
        except Exception:  # the SDK instrument is always a correct fallback
            self.lean = None
        # Only sampled measurements can carry an exemplar (trace-based filter) or none can (off).
        self.sampled_only = self.lean is not None and (
            not hasattr(self.lean, "offer") or getattr(self.lean, "exemplar_mode", 0) in (0, 1))

    def bind(self, attributes: dict[str, str]) -> Any:
        """A handle for ``record`` (resolve once per attribute set, keep it)."""
        if self.lean is None:
            return attributes
        key = (self.name, *sorted(attributes.items()))
        return self.lean.point(key, attributes)

    def record(self, handle: Any, value: float, span: Any = None) -> None:
        """Record ``value``; ``span`` is the operation's recording span, if any (exemplars)."""
        lean = self.lean
        if lean is None:
            self.instrument.record(value, handle)
        elif span is None and self.sampled_only:
            lean.record(handle, value)
        elif hasattr(lean, "offer"):
            lean.offer(handle, value, span if span is not None else trace.get_current_span(), handle.attributes)
        else:
            lean.record(handle, value)


def instrument_engine(engine: Any, telemetry: Telemetry) -> Engine:
    """Instrument a sync ``Engine`` or an ``AsyncEngine``; a second call is a no-op."""
    sync_engine = sync_engine_of(engine)
    if getattr(sync_engine, _MARK, False):
        return sync_engine
    setattr(sync_engine, _MARK, True)
    if not getattr(sync_engine.dialect, _MARK, False):  # engine.execution_options() copies share it
        setattr(sync_engine.dialect, _MARK, True)
        _DialectTracer(sync_engine, telemetry).install()
    _observe_pool(sync_engine, telemetry)
    return sync_engine


def _contrib_traces_sqlalchemy() -> bool:
    """Zero-code mode already traces every engine (contrib instrumentor wrapped ``create_engine``)."""
    try:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    except ImportError:
        return False
    return bool(SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry)


class _Statement:
    """What a statement's span and measurement need, computed once per distinct statement."""

    __slots__ = ("attributes", "handle", "name", "op")

    def __init__(self, op: str, name: str, handle: Any, attributes: dict[str, Any]) -> None:
        self.op, self.name, self.handle, self.attributes = op, name, handle, attributes


class _DialectTracer:
    """Wraps the engine's dialect ``do_execute`` / ``do_executemany`` / ``do_execute_no_params``.

    Those are the calls the cursor events bracket (``before_cursor_execute`` runs right before,
    ``after_cursor_execute`` right after), made by the engine for every statement, sync or async
    (an ``AsyncEngine`` runs its ``sync_engine`` in a greenlet), with the final statement string.
    Wrapping them on this engine's dialect instance instead of registering cursor events keeps
    SQLAlchemy's event-free fast path: merely having cursor listeners costs about 13 us a
    statement on the reference machine (``_has_events`` turns on the before/after-execute
    dispatch in every ``execute``), as much as the whole 15 % budget. A ``do_execute`` event
    registered on the dialect still runs first and, when it handles the call, replaces this
    wrapper as it would replace the dialect method.
    """

    def __init__(self, engine: Engine, telemetry: Telemetry) -> None:
        self.engine = engine
        self.system = _SYSTEMS.get(engine.dialect.name, engine.dialect.name)
        self.recorder = Recorder(telemetry, "db.client.operation.duration")
        self.tracing = not _contrib_traces_sqlalchemy()
        self.tracer = contrib_tracer(telemetry.tracer_provider, "sqlalchemy")
        self.gate = SpanGate(telemetry.tracer_provider, self.tracer)
        url = engine.url
        self.namespace = url.database or None
        static: dict[str, Any] = {"db.system.name": self.system}
        if self.namespace:
            static["db.namespace"] = self.namespace
        if url.host:
            static["server.address"] = url.host
        if url.port:
            static["server.port"] = int(url.port)
        self.static = static
        self._statements: dict[str, _Statement] = {}
        self._errors: dict[tuple[str, str], Any] = {}

    def install(self) -> None:
        dialect = self.engine.dialect
        dialect.do_execute = self._wrap(dialect.do_execute, many=False)
        dialect.do_executemany = self._wrap(dialect.do_executemany, many=True)
        original = dialect.do_execute_no_params
        wrapped = self._wrap(lambda cursor, statement, _params, context: original(cursor, statement, context),
                             many=False)
        dialect.do_execute_no_params = lambda cursor, statement, context=None: wrapped(
            cursor, statement, None, context)

    # --- cached per statement / attribute set ---------------------------------------------------
    def statement(self, statement: str) -> _Statement:
        found = self._statements.get(statement)
        if found is None:
            op = operation_name(statement)
            attributes = dict(self.static)
            attributes["db.operation.name"] = op
            attributes["db.query.text"] = sanitize_sql(statement)
            found = _Statement(op, f"{op} {self.namespace}" if self.namespace else op,
                               self._handle(op, None), attributes)
            if len(self._statements) < MAX_CACHED_STATEMENTS:
                self._statements[statement] = found
        return found

    def _handle(self, op: str, error: str | None) -> Any:
        key = (op, error or "")
        found = self._errors.get(key)
        if found is None:
            attrs = {"db.system.name": self.system, "db.operation.name": op}
            if error:
                attrs["error.type"] = error
            found = self.recorder.bind(attrs)
            if len(self._errors) < 256:
                self._errors[key] = found
        return found

    def _start(self, stmt: _Statement, parameters: Any, many: bool) -> Any:
        attributes = stmt.attributes
        if many and isinstance(parameters, (list, tuple)) and len(parameters) > 1:
            attributes = {**attributes, "db.operation.batch.size": len(parameters)}
        return self.gate.start(stmt.name, attributes)

    def _failed(self, stmt: _Statement, span: Any, exc: BaseException, elapsed: float) -> None:
        err = error_type(exc)
        self.recorder.record(self._handle(stmt.op, err), elapsed, span)
        if span is not None:
            span.set_attribute("error.type", err)
            span.set_status(StatusCode.ERROR, err)  # never the message: it can quote parameters
            span.end()

    def _wrap(self, original: Any, *, many: bool) -> Any:
        statements = self._statements
        statement_of = self.statement
        recorder = self.recorder
        record = recorder.record
        # Without a span the measurement is a plain lean record when no exemplar can be taken.
        plain = recorder.lean.record if recorder.lean is not None and recorder.sampled_only else record
        start = self._start
        gate_start = self.gate.start
        failed = self._failed
        tracing = self.tracing
        perf_counter = time.perf_counter

        def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
            stmt = statements.get(statement) or statement_of(statement)
            if not tracing:
                span = None
            elif many:
                span = start(stmt, parameters, many)
            else:  # a single statement's span needs no per-call attributes: straight to the gate
                span = gate_start(stmt.name, stmt.attributes)
            t0 = perf_counter()
            try:
                original(cursor, statement, parameters, context)
            except BaseException as exc:
                failed(stmt, span, exc, perf_counter() - t0)
                raise
            if span is None:
                plain(stmt.handle, perf_counter() - t0)
            else:
                record(stmt.handle, perf_counter() - t0, span)
                span.end()

        return do_execute


def _observe_pool(sync_engine: Engine, telemetry: Telemetry) -> None:
    pool = sync_engine.pool

    def pool_obs() -> list[tuple[float, dict[str, str]]]:
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        idle = getattr(pool, "checkedin", lambda: 0)()
        size = getattr(pool, "size", lambda: 0)()
        overflow = getattr(pool, "_max_overflow", 0)
        return [(float(checked_out), {"state": "used"}), (float(idle), {"state": "idle"}),
                (float(size + max(overflow, 0)), {"state": "max"})]

    telemetry.observe("sizewise.db.pool.connections", pool_obs)
