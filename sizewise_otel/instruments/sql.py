"""SQLAlchemy: DB CLIENT spans, the stable ``db.client.operation.duration`` histogram and pool gauges.

A lean wrapper of the engine dialect's ``do_execute`` family replaces the contrib
``SQLAlchemyInstrumentor`` and the cursor-event listeners (see docs/performance.md and
:class:`_DialectTracer`): one plain function call per statement records both the span and the
metric.

- **Spans** follow the OTel semantics: a CLIENT span per statement, a child of the current span,
  the SDK's sampler deciding. Under a valid, non-sampled parent that a parent-based sampler drops
  anyway (the 90 % of requests a 10 % ratio leaves out), no span is started at all. A statement
  outside any span starts none either, unless ``SIZEWISE_DB_ROOT_SPANS`` is on: then it is a root
  span and goes through the ratio sampler like any other root.
  Attributes (``db.system.name``, ``db.namespace``, ``server.address``, ``server.port``,
  ``db.query.text``) are only built when the span records: the connection part once per engine,
  the statement part once per distinct statement (cached, bounded). ``db.query.text`` is the
  parameterized statement SQLAlchemy sends (bound values never appear) with any inline string or
  numeric literal replaced by ``?``. No ``db.operation.name``: the conventions say it SHOULD NOT
  be parsed out of the query text, and no ``db.query.summary`` either (it needs a full SQL parser to
  be what the conventions define). So the span is named after its target, as the conventions fall
  back when neither exists: ``{db.namespace}``, else ``{server.address}:{server.port}``, else
  ``{db.system.name}``.
- **Metric**: ``db.client.operation.duration`` with the connection attributes (``db.system.name``,
  ``db.namespace``, ``server.address``, ``server.port``) and ``error.type`` on failure (the shared
  :func:`~sizewise_otel.instruments.request.error_type`); the histogram is the HTTP layer's lean
  aggregation when the provider allows it (one bisect and four additions under a lock per
  statement), the SDK instrument otherwise.
"""

from __future__ import annotations

import re
import time
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy.engine import Engine

from sizewise_otel.fastpath import BoundedCache, Recorder, SpanGate, contrib_scope
from sizewise_otel.instruments.registry import Undo
from sizewise_otel.instruments.request import error_type
from sizewise_otel.telemetry import SCOPE, Telemetry

# SQLAlchemy dialect name -> the registered db.system.name value.
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mariadb",
            "mssql": "microsoft.sql_server", "oracle": "oracle.db"}
_WRAPPED_METHODS = ("do_execute", "do_executemany", "do_execute_no_params")
_ABSENT = object()
# Distinct statements whose sanitized text is cached per engine; past this the
# listener still works and computes them per call (only for sampled spans).
MAX_CACHED_STATEMENTS = 1024
# Inline literals: quoted strings and numbers that are not part of an identifier or a positional
# placeholder ($1, :1, %(name_1)s keep their digits).
_LITERALS = re.compile(r"'(?:[^']|'')*'|(?<![\w$:.%])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b")
_MAX_QUERY_TEXT = 2048


def span_name(attributes: dict[str, Any]) -> str:
    """The span name without ``db.query.summary`` or ``db.operation.name``: its target
    (``db.namespace``, else ``server.address:server.port``), else ``db.system.name``."""
    if attributes.get("db.namespace"):
        return str(attributes["db.namespace"])
    if attributes.get("server.address"):
        port = attributes.get("server.port")
        return f"{attributes['server.address']}:{port}" if port else str(attributes["server.address"])
    return str(attributes["db.system.name"])


def sanitize_sql(statement: str) -> str:
    """``statement`` with inline string and numeric literals replaced by ``?`` (bounded length)."""
    text = _LITERALS.sub("?", statement)
    return text if len(text) <= _MAX_QUERY_TEXT else text[:_MAX_QUERY_TEXT - 3] + "..."


def sync_engine_of(engine: Any) -> Engine:
    return getattr(engine, "sync_engine", engine)


def contrib_tracer(tracer_provider: Any, package: str) -> trace.Tracer:
    """A tracer under the contrib instrumentor's scope, so traces look the same in zero-code mode."""
    try:
        name, version, url = contrib_scope(package, "database")
        return tracer_provider.get_tracer(name, version, schema_url=url)
    except Exception:  # contrib package missing or changed: our own scope
        return tracer_provider.get_tracer(f"{SCOPE}.{package}")


def recorder(telemetry: Telemetry, name: str) -> Recorder:
    """The catalog histogram ``name`` under SizeWise's scope (lean when the fast path allows it)."""
    return Recorder(telemetry, name, (SCOPE, telemetry.settings.service_version, None))


def instrument_engine(engine: Any, telemetry: Telemetry, undo: Undo | None = None) -> Engine:
    """Instrument a sync ``Engine`` or an ``AsyncEngine``; a second call is a no-op.

    ``undo`` receives what puts the engine back (``Instrumentation.uninstrument()`` runs it).
    """
    undo = undo if undo is not None else Undo()
    sync_engine = sync_engine_of(engine)
    if not undo.claim(sync_engine, "sqlalchemy"):
        return sync_engine
    if undo.claim(sync_engine.dialect, "sqlalchemy"):  # engine.execution_options() copies share it
        tracer = _DialectTracer(sync_engine, telemetry)
        tracer.install()
        undo.add("sqlalchemy dialect", tracer.uninstall)
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

    __slots__ = ("attributes", "handle", "name")

    def __init__(self, name: str, handle: Any, attributes: dict[str, Any]) -> None:
        self.name, self.handle, self.attributes = name, handle, attributes


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
        self.recorder = recorder(telemetry, "db.client.operation.duration")
        self.tracing = not _contrib_traces_sqlalchemy()
        self.tracer = contrib_tracer(telemetry.tracer_provider, "sqlalchemy")
        self.gate = SpanGate(telemetry.tracer_provider, self.tracer, roots=telemetry.settings.sizewise_db_root_spans)
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
        self.name = span_name(static)
        self.handle = self.recorder.bind(static)  # the measurement attributes: the connection's
        self._statements: BoundedCache[str, _Statement] = BoundedCache(MAX_CACHED_STATEMENTS)
        self._errors: BoundedCache[str, Any] = BoundedCache(256)

    def install(self) -> None:
        dialect = self.engine.dialect
        # What the instance itself held (normally nothing: the methods come from the class).
        self._saved = {name: vars(dialect).get(name, _ABSENT) for name in _WRAPPED_METHODS}
        dialect.do_execute = self._wrap(dialect.do_execute, many=False)
        dialect.do_executemany = self._wrap(dialect.do_executemany, many=True)
        original = dialect.do_execute_no_params
        wrapped = self._wrap(lambda cursor, statement, _params, context: original(cursor, statement, context),
                             many=False)
        dialect.do_execute_no_params = lambda cursor, statement, context=None: wrapped(
            cursor, statement, None, context)

    def uninstall(self) -> None:
        """Put the dialect's own methods back."""
        dialect = self.engine.dialect
        for name, saved in self._saved.items():
            if saved is _ABSENT:
                vars(dialect).pop(name, None)
            else:
                setattr(dialect, name, saved)

    # --- cached per statement / attribute set ---------------------------------------------------
    def statement(self, statement: str) -> _Statement:
        found = self._statements.get(statement)
        if found is None:
            attributes = dict(self.static)
            attributes["db.query.text"] = sanitize_sql(statement)
            found = self._statements.put(statement, _Statement(self.name, self.handle, attributes))
        return found

    def _error_handle(self, error: str) -> Any:
        found = self._errors.get(error)
        if found is None:
            found = self._errors.put(error, self.recorder.bind({**self.static, "error.type": error}))
        return found

    def _start(self, stmt: _Statement, parameters: Any, many: bool) -> Any:
        attributes = stmt.attributes
        if many and isinstance(parameters, (list, tuple)) and len(parameters) > 1:
            attributes = {**attributes, "db.operation.batch.size": len(parameters)}
        return self.gate.start(stmt.name, attributes)

    def _failed(self, stmt: _Statement, span: Any, exc: BaseException, elapsed: float) -> None:
        err = error_type(exc)
        self.recorder.record(self._error_handle(err), elapsed, span)
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
        plain = recorder.plain
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


def pool_name(sync_engine: Engine) -> str:
    """``db.client.connection.pool.name``: the pool's own logging name, else what the conventions
    suggest when a pool has none, ``server.address:server.port/db.namespace`` (never the password)."""
    pool = sync_engine.pool
    named = getattr(pool, "logging_name", None)
    if named:
        return str(named)
    url = sync_engine.url
    if url.host:
        server = f"{url.host}:{url.port}" if url.port else url.host
        return f"{server}/{url.database}" if url.database else server
    return url.database or sync_engine.dialect.name


# Per Telemetry, the engines whose pools are reported (pool name -> engine; its current pool is read,
# as dispose() replaces it): one callback per signal reads them all.
_POOLS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _observe_pool(sync_engine: Engine, telemetry: Telemetry) -> None:
    """``db.client.connection.count{state=used|idle}`` and ``db.client.connection.max`` per pool
    (the maximum is its own series: a sum over the states stays the connections that exist)."""
    pools = _POOLS.get(telemetry)
    first = pools is None
    if pools is None:
        pools = _POOLS[telemetry] = {}
    pools[pool_name(sync_engine)] = sync_engine
    if not first:
        return

    def counts() -> list[tuple[float, dict[str, str]]]:
        out: list[tuple[float, dict[str, str]]] = []
        for name, engine in list(pools.items()):
            pool = engine.pool
            used = getattr(pool, "checkedout", lambda: 0)()
            idle = getattr(pool, "checkedin", lambda: 0)()
            out += [(float(used), {"db.client.connection.state": "used", "db.client.connection.pool.name": name}),
                    (float(idle), {"db.client.connection.state": "idle", "db.client.connection.pool.name": name})]
        return out

    def maxima() -> list[tuple[float, dict[str, str]]]:
        out: list[tuple[float, dict[str, str]]] = []
        for name, engine in list(pools.items()):
            pool = engine.pool
            size = getattr(pool, "size", None)
            if size is None:  # NullPool, StaticPool...: no maximum to report
                continue
            overflow = getattr(pool, "_max_overflow", 0)
            out.append((float(size() + max(overflow, 0)), {"db.client.connection.pool.name": name}))
        return out

    telemetry.observe("db.client.connection.count", counts)
    telemetry.observe("db.client.connection.max", maxima)
