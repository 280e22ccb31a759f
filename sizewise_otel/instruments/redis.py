"""Lean CLIENT spans and ``db.client.operation.duration`` for a redis-py client instance (sync
``redis.Redis`` or ``redis.asyncio.Redis``), on both instrumentation paths.

The instance's ``execute_command`` (and the ``execute`` of the pipelines it creates) is wrapped by a
plain function that

- records every command's duration in ``db.client.operation.duration`` (the SQL layer's recorder:
  ``db.system.name`` = ``redis``, ``db.namespace`` = the database index, ``server.address``,
  ``server.port``, and ``error.type`` on failure), whether or not a span is sampled;
- starts no span at all under a valid, non-sampled parent a parent-based sampler drops anyway
  (:class:`sizewise_otel.fastpath.SpanGate`), nor outside any span unless
  ``SIZEWISE_DB_ROOT_SPANS`` is on (then a root span, subject to the ratio sampler), and otherwise
  lets the SDK sampler decide;
- hands ``start_span`` a cached attribute dict: the connection part built once per client, plus
  ``db.operation.name`` (the command) and the sanitized ``db.query.text`` (``SET ? ?``: the command
  name, never a key or value) once per (command, argument count);
- names a pipeline's span and operation ``MULTI`` when redis-py runs it as a transaction (its
  default, or after ``pipe.multi()``) and ``PIPELINE`` otherwise (``transaction=False``), with
  ``db.operation.batch.size`` only for two commands or more, as the conventions define a batch;
- on failure sets ``error.type`` (the shared :func:`~sizewise_otel.instruments.request.error_type`)
  and ERROR status, without the message.

A command's span is named after the command, as the contrib names it. Where the contrib
instrumentor already traces the client (zero-code mode), the wrapper records the duration only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import StatusCode

from sizewise_otel.fastpath import BoundedCache, SpanGate, instrumented_by_contrib
from sizewise_otel.instruments.registry import MARKS, Undo
from sizewise_otel.instruments.request import error_type
from sizewise_otel.instruments.sql import contrib_tracer, recorder

MARK = "redis"
_ABSENT = object()
_MAX_QUERY_TEXT = 1000
_MAX_CACHED = 512


def _command_name(args: tuple[Any, ...]) -> str:
    if not args:
        return "redis"
    first = args[0]
    if isinstance(first, bytes):
        first = first.decode("utf-8", "replace")
    return str(first).upper()


def sanitized_command(args: tuple[Any, ...]) -> str:
    """The command with every argument replaced by ``?`` (the contrib's ``COMMAND ? ?`` form)."""
    if not args:
        return ""
    text = " ".join([_command_name(args), *(["?"] * (len(args) - 1))])
    return text if len(text) <= _MAX_QUERY_TEXT else text[:_MAX_QUERY_TEXT - 3] + "..."


def connection_attributes(client: Any) -> dict[str, Any]:
    """The semconv connection attributes of a client, from its pool's connection kwargs."""
    attrs: dict[str, Any] = {"db.system.name": "redis"}
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    db = kwargs.get("db")
    attrs["db.namespace"] = str(db if db is not None else 0)
    if "path" in kwargs:
        attrs["server.address"] = str(kwargs.get("path") or "")
    else:
        attrs["server.address"] = str(kwargs.get("host") or "localhost")
        attrs["server.port"] = int(kwargs.get("port") or 6379)
    return attrs


def pipeline_operation(pipe: Any) -> str:
    """``MULTI`` when redis-py sends the pipeline as a transaction, else ``PIPELINE``."""
    # redis.asyncio calls the flag is_transaction (its ``transaction`` is the inherited method).
    state = getattr(pipe, "__dict__", {})
    transaction = state.get("is_transaction", state.get("transaction", False))
    return "MULTI" if transaction is True or getattr(pipe, "explicit_transaction", False) else "PIPELINE"


def _is_async(client: Any) -> bool:
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - redis without asyncio
        return False
    return isinstance(client, (redis.asyncio.Redis, getattr(redis.asyncio, "RedisCluster", ())))


class _ClientTracer:
    def __init__(self, client: Any, telemetry: Any, tracing: bool) -> None:
        self.tracing = tracing
        self.tracer = contrib_tracer(telemetry.tracer_provider, "redis")
        self.gate = SpanGate(telemetry.tracer_provider, self.tracer, roots=telemetry.settings.sizewise_db_root_spans)
        self.static = connection_attributes(client)
        self.recorder = recorder(telemetry, "db.client.operation.duration")
        self.handle = self.recorder.bind(self.static)
        self._errors: BoundedCache[str, Any] = BoundedCache(256)
        self.commands: BoundedCache[tuple[Any, int], tuple[str, dict[str, Any]]] = BoundedCache(_MAX_CACHED)

    def error_handle(self, error: str) -> Any:
        found = self._errors.get(error)
        if found is None:
            found = self._errors.put(error, self.recorder.bind({**self.static, "error.type": error}))
        return found

    def command(self, args: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
        """(span name, attributes) for a command, cached per (command, argument count)."""
        key = (args[0] if args else None, len(args))
        found = self.commands.get(key)
        if found is None:
            name = _command_name(args)
            attrs = dict(self.static)
            attrs["db.operation.name"] = name
            attrs["db.query.text"] = sanitized_command(args)
            found = self.commands.put(key, (name, attrs))
        return found

    def pipeline(self, pipe: Any) -> tuple[str, dict[str, Any]]:
        stack = getattr(pipe, "command_stack", None) or getattr(pipe, "_command_stack", None) or []
        commands = []
        for entry in stack:
            args = getattr(entry, "args", None)
            if args is None:
                args = entry[0] if isinstance(entry, tuple) and entry else ()
            commands.append(sanitized_command(tuple(args)))
        text = "\n".join(commands)
        name = pipeline_operation(pipe)
        attrs = dict(self.static)
        attrs["db.operation.name"] = name
        if len(commands) > 1:  # a batch is two operations or more
            attrs["db.operation.batch.size"] = len(commands)
        attrs["db.query.text"] = text if len(text) <= _MAX_QUERY_TEXT else text[:_MAX_QUERY_TEXT - 3] + "..."
        return name, attrs

    def start(self, args: tuple[Any, ...], pipe: Any) -> Any:
        """A recording span (attributes set), or ``None`` when nothing would be sampled."""
        if pipe is not None:
            if self.gate.skip():
                return None
            name, attrs = self.pipeline(pipe)
        else:
            name, attrs = self.command(args)
        return self.gate.start(name, attrs)

    def failed(self, span: Any, exc: BaseException, elapsed: float) -> None:
        err = error_type(exc)
        self.recorder.record(self.error_handle(err), elapsed, span)
        if span is not None:
            span.set_attribute("error.type", err)
            span.set_status(StatusCode.ERROR, err)  # never the message
            span.end()


def _starter(traced: _ClientTracer, pipe: Any) -> Callable[[tuple[Any, ...]], Any]:
    """``args -> recording span | None`` for commands (cached lookups inline) or a pipeline."""
    if not traced.tracing:
        return lambda args: None
    if pipe is not None:
        return lambda args: traced.start(args, pipe)
    commands = traced.commands
    command = traced.command
    gate_start, skip = traced.gate.start, traced.gate.skip

    def start(args: tuple[Any, ...]) -> Any:
        if skip():  # the usual case (no span to start): decided before any command lookup
            return None
        found = commands.get((args[0], len(args))) if args else None
        if found is None:
            found = command(args)
        return gate_start(found[0], found[1])

    return start


def _wrap_sync(target: Any, attr: str, traced: _ClientTracer, pipe: Any) -> None:
    """Replace ``target.<attr>`` (a command, or a pipeline's ``execute`` when ``pipe`` is given)."""
    original = getattr(target, attr)
    start = _starter(traced, pipe)
    handle, record, plain, failed = traced.handle, traced.recorder.record, traced.recorder.plain, traced.failed
    perf_counter = time.perf_counter

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = start(args)
        t0 = perf_counter()
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            failed(span, exc, perf_counter() - t0)
            raise
        if span is None:
            plain(handle, perf_counter() - t0)
        else:
            record(handle, perf_counter() - t0, span)
            span.end()
        return result

    setattr(target, attr, wrapper)


def _wrap_async(target: Any, attr: str, traced: _ClientTracer, pipe: Any) -> None:
    original = getattr(target, attr)
    start = _starter(traced, pipe)
    handle, record, plain, failed = traced.handle, traced.recorder.record, traced.recorder.plain, traced.failed
    perf_counter = time.perf_counter

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = start(args)
        t0 = perf_counter()
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            failed(span, exc, perf_counter() - t0)
            raise
        if span is None:
            plain(handle, perf_counter() - t0)
        else:
            record(handle, perf_counter() - t0, span)
            span.end()
        return result

    setattr(target, attr, wrapper)


def trace_redis_client(client: Any, telemetry: Any, *, tracing: bool = True) -> Callable[[], None] | None:
    """Wrap one client instance (``tracing=False``: the duration metric only, for a client the contrib
    traces); returns what unwraps it, or ``None`` when it was already wrapped."""
    if not MARKS.claim(client, MARK):
        return None
    saved = {name: vars(client).get(name, _ABSENT) for name in ("execute_command", "pipeline")}
    traced = _ClientTracer(client, telemetry, tracing)
    wrap = _wrap_async if _is_async(client) else _wrap_sync
    wrap(client, "execute_command", traced, None)
    original_pipeline = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original_pipeline(*args, **kwargs)
        with contextlib.suppress(AttributeError, TypeError):
            wrap(pipe, "execute", traced, pipe)
        return pipe

    client.pipeline = pipeline

    def untrace() -> None:
        for name, value in saved.items():
            if value is _ABSENT:
                vars(client).pop(name, None)
            else:
                setattr(client, name, value)
        MARKS.release(client, MARK)

    return untrace


def redis_traced_globally() -> bool:
    """Zero-code mode: the contrib instrumentor already patched redis-py for every client."""
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
    except ImportError:
        return False
    return bool(RedisInstrumentor().is_instrumented_by_opentelemetry)


def instrument_redis(client: Any, telemetry: Any, undo: Undo | None = None) -> None:
    """OTel CLIENT spans and ``db.client.operation.duration`` for a sync or asyncio Redis client, and
    its server's INFO gauges (``redis_info.py``; cache-level metrics come from InstrumentedCache).

    The same lean wrapper on both paths (public OTel APIs only; the fast path's span gate spares
    non-sampled parents the sampler), so both export the same spans and series. A client the contrib
    instrumentor already traces (zero-code mode patches redis-py globally) keeps its spans and gets
    the duration metric only; a second call is a no-op.
    """
    undo = undo if undo is not None else Undo()
    # The server's memory, evictions and keyspace hits (INFO), whoever traces the client's commands.
    if undo.claim(client, "redis.info"):
        from sizewise_otel.instruments.redis_info import watch_redis_server

        unwatch = watch_redis_server(client, telemetry)
        if unwatch is not None:
            undo.add("redis INFO", unwatch)
    if not undo.claim(client, "redis.client"):
        return
    tracing = not (redis_traced_globally() or instrumented_by_contrib(client))
    untrace = trace_redis_client(client, telemetry, tracing=tracing)
    if untrace is not None:
        undo.add("redis client", untrace)
