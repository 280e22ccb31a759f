"""The ErrorTracker: capture -> (queue) -> scrub -> fingerprint -> group -> store, plus OTel and alerts.

The request path (:meth:`ErrorTracker.capture_error`) does only what must happen while the caller
waits, and nothing that formats, matches or hashes text: it keeps references (the exception, a
snapshot of its traceback head and cause, a shallow copy of the context), takes an error id and a
timestamp, and, when the current span is recording, adds a lazy ``exception`` event plus status
ERROR. Then a lock-free append to a bounded queue (full: counted as dropped, and as an error).

The writer thread counts ``sizewise_errors_total`` as captures leave the queue (the SDK counter costs
more than the rest of the capture; a capture under a sampled span still gets its exemplar), turns
each capture into an :class:`ErrorEvent` (``ErrorTracker._prepare``): message and stack trace
rendering, scrubbing of message, stack, context and locals, message parameterization, the
fingerprint, the user hash; then grouping counts, samples, users, trends and alert signals, in
batches. The span's lazy event reuses the same prepared event (computed once, by whichever thread
reads it first), so the span and the store agree on the group id. Reads that must see every capture
(``GET /errors/...``) call :meth:`ErrorTracker.flush` first. Alert signals go to the log and to the
embedded evaluator's channels (Slack, webhook) on their own thread (``errors/alerts.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from sizewise_otel.alerts.notify import RetryPolicy, ThreadedDispatcher, configured_notifiers
from sizewise_otel.catalog import DROP_REASON, ERROR_SEVERITY, NOTIFICATION_CHANNEL, NOTIFICATION_OUTCOME
from sizewise_otel.errors.alerts import AlertListener, AlertSignals, NotifyListener, SpikeDetector, log_signal
from sizewise_otel.errors.context import ErrorContext, ErrorEvent, ErrorSeverity, Frame
from sizewise_otel.errors.fingerprint import (
    ChainSnapshot,
    StackEntry,
    extract_frames,
    fingerprint,
    format_stacktrace,
    frames_from_stack_snapshot,
    parameterize,
    parameterize_route,
    stack_snapshot,
)
from sizewise_otel.errors.logging_handler import SERVER_LOGGERS, install_log_scrubbing
from sizewise_otel.errors.scrub import Scrubber
from sizewise_otel.errors.spans import (
    ERROR_ID_ATTR,
    GROUP_ID_ATTR,
    install_span_scrubber,
    mark_server_error_status,
    record_lazy_on_span,
)
from sizewise_otel.errors.store import BatchResult, ErrorStore, resolve_store_url
from sizewise_otel.errors.writer import EventWriter
from sizewise_otel.fastpath import BoundedCache, current_span
from sizewise_otel.instruments.request import error_type as error_type_of
from sizewise_otel.instruments.request import headers_named, route_template
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry

__all__ = ["ErrorContext", "ErrorSeverity", "ErrorTracker", "get_error_tracker", "initialize_error_tracker"]

log = structlog.get_logger("sizewise.errors")
F = TypeVar("F", bound=Callable[..., Any])

MAX_ERROR_TYPES = 200  # distinct `error.type` metric values; the rest become "other"
CAPTURED_HEADERS = ("user-agent", "content-type", "content-length", "accept", "referer", "origin",
                    "x-request-id", "authorization", "cookie", "x-api-key")
# Health endpoints answer 503 on purpose when a dependency is down: that is a report, not an error.
STATUS_EXEMPT_ROUTES = frozenset({"/health", "/livez", "/readyz"})
_CRITICAL = (MemoryError, RecursionError, SystemError)
_HIGH = (ConnectionError, TimeoutError, OSError, RuntimeError, AssertionError)
_LOW = (Warning,)
_CAPTURED = frozenset(CAPTURED_HEADERS)


def default_severity(exc: BaseException | None) -> ErrorSeverity:
    if exc is None:
        return ErrorSeverity.MEDIUM
    if isinstance(exc, _CRITICAL):
        return ErrorSeverity.CRITICAL
    if isinstance(exc, _HIGH) or type(exc).__module__.split(".")[0] in ("sqlalchemy", "psycopg", "redis"):
        return ErrorSeverity.HIGH
    if isinstance(exc, _LOW):
        return ErrorSeverity.LOW
    return ErrorSeverity.MEDIUM


_severity_cache: BoundedCache[type, ErrorSeverity] = BoundedCache(4096)


def _severity_of(exc: BaseException | None) -> ErrorSeverity:
    """``default_severity`` cached per exception class (it depends on the class only)."""
    if exc is None:
        return ErrorSeverity.MEDIUM
    cls = type(exc)
    sev = _severity_cache.get(cls)
    if sev is None:
        sev = _severity_cache.put(cls, default_severity(exc))
    return sev


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_ID_POOL = 256
_ids: list[str] = []


def _format_id(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def top_up_error_ids() -> None:
    """Refill the id pool from one ``os.urandom`` call (the writer thread does, off the request path)."""
    missing = _ID_POOL - len(_ids)
    if missing > _ID_POOL // 2:
        raw = os.urandom(16 * missing).hex()
        _ids.extend([_format_id(raw[i:i + 32]) for i in range(0, len(raw), 32)])


def new_error_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but without the UUID object.

    Taken from a pool the writer thread refills: a list ``pop`` is atomic, so threads never share an
    id. An empty pool (a burst before the writer ran) costs one ``os.urandom`` call, as before. A
    forked child drops the parent's unused ones."""
    try:
        return _ids.pop()
    except IndexError:
        return _format_id(os.urandom(16).hex())


os.register_at_fork(after_in_child=_ids.clear)


class PendingError(ChainSnapshot):
    """One capture as the request path leaves it: references and snapshots, no strings built.

    It is its own :class:`ChainSnapshot` (one object per capture, not two) and keeps the current
    span's context as is (ids and flags are read off the request path). The writer thread (or the
    exporter thread, through the span's lazy event, whichever comes first) turns it into the scrubbed
    :class:`ErrorEvent` once; the references to the exception and its frames are released then.
    """

    __slots__ = ("context", "custom", "error_id", "error_type", "event", "exception", "frames",
                 "message", "severity", "source", "span_context", "stack", "timestamp")

    def __init__(self, error_id: str, timestamp: float, error_type: str, severity: str,
                 exception: BaseException | None, message: str | None,
                 stack: list[StackEntry] | None, frames: list[Frame] | None, context: dict[str, Any] | None,
                 custom: Sequence[str] | None, source: str) -> None:
        self.error_id = error_id
        self.timestamp = timestamp
        self.error_type = error_type
        self.severity = severity
        self.exception = exception
        if exception is not None:  # ChainSnapshot's fields, inline
            self.tb = exception.__traceback__
            cause = exception.__cause__
            self.explicit = cause is not None
            self.cause = cause if cause is not None else (None if exception.__suppress_context__
                                                          else exception.__context__)
        else:
            self.tb = self.cause = None
            self.explicit = False
        self.message = message
        self.stack = stack
        self.frames = frames
        self.context = context
        self.custom = custom
        self.source = source
        self.span_context: SpanContext | None = None
        self.event: ErrorEvent | None = None

    @property
    def trace_id(self) -> int:
        return self.span_context.trace_id if self.span_context is not None else 0

    @property
    def span_id(self) -> int:
        return self.span_context.span_id if self.span_context is not None else 0

    @property
    def sampled(self) -> bool:
        return self.span_context is not None and self.span_context.trace_flags.sampled


_request_meta: BoundedCache[type, tuple[str, str]] = BoundedCache(4096)


def _request_meta_of(exc: BaseException) -> tuple[str, str]:
    """(error type, severity) of an exception escaping a request, cached per class: at least high
    (unhandled in a request: a user saw a 500)."""
    sev = _severity_of(exc)
    if sev.rank < ErrorSeverity.HIGH.rank:
        sev = ErrorSeverity.HIGH
    return _request_meta.put(type(exc), (error_type_of(exc), sev.value))


_prepare_lock = threading.Lock()
_DROP_ATTRS = {r: {DROP_REASON: r} for r in ("queue_full", "store_unavailable", "shutdown", "capture_failed")}


class ErrorTracker:
    def __init__(self, settings: Settings, telemetry: Telemetry, *, scrubber: Scrubber | None = None,
                 store_url: str | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        # Optional knobs the Settings object may grow (documented in docs/errors.md).
        self.capture_locals: bool = bool(getattr(settings, "error_capture_locals", False))
        self.scrubber = scrubber or Scrubber(
            ip_addresses=bool(getattr(settings, "error_scrub_ip_addresses", True)))
        self.store_url = store_url or resolve_store_url(settings)
        self._errors = telemetry.instrument("sizewise.errors")
        self._dropped = telemetry.instrument("sizewise.errors.dropped")
        self._groups_new = telemetry.instrument("sizewise.error.groups.new")
        # The new-group series start at 0 (their labels are known in advance): increase() counts a
        # counter from its first sample on, so a series born at 1 hid the first new group of a
        # process from NewErrorGroup. (sizewise_errors_total's error.type is not known in advance,
        # and a 0 added just before the 1 lands in the same collection: no help, so none is added.)
        for sev in ErrorSeverity:
            self._groups_new.add(0, {ERROR_SEVERITY: sev.value})
        self._types: set[str] = set()
        max_groups = settings.sizewise_error_alert_max_groups
        self.alerts = AlertSignals(settings.error_alert_cooldown_minutes, SpikeDetector(
            factor=settings.sizewise_error_spike_factor, min_events=settings.sizewise_error_spike_min_events,
            baseline_minutes=settings.sizewise_error_spike_baseline_minutes, max_groups=max_groups),
            max_groups=max_groups)
        self.alerts.add_listener(log_signal)
        self.notify_outcomes: dict[tuple[str, str], int] = {}
        self.notifier = self._make_notifier(telemetry)
        if self.notifier is not None:
            self.alerts.add_listener(NotifyListener(self.notifier, service=settings.otel_service_name,
                                                    base_url=settings.sizewise_public_url))
        self.writer = EventWriter(
            self._make_store, maxsize=settings.error_queue_size, on_dropped=self._count_dropped,
            on_result=self._on_batch, retention_seconds=settings.error_retention_hours * 3600.0,
            prepare=self._prepare, on_taken=self._taken)
        self.dropped: dict[str, int] = {"queue_full": 0, "store_unavailable": 0, "shutdown": 0}
        self._metric_attrs: BoundedCache[tuple[str, str], dict[str, str]] = BoundedCache(1024)
        self._types_lock = threading.Lock()  # the writer and an overloaded request path admit types
        self._reader: ErrorStore | None = None
        self._reader_lock = threading.Lock()
        self._reader_pid = os.getpid()
        self._started = False
        self._hooks: list[Callable[[], None]] = []
        install_span_scrubber(telemetry.tracer_provider, self.scrubber)
        install_span_scrubber(trace.get_tracer_provider(), self.scrubber)  # zero-code mode's provider
        _live_trackers.add(self)

    # --- lifecycle ------------------------------------------------------------------------------
    def _make_notifier(self, telemetry: Telemetry) -> ThreadedDispatcher | None:
        """The alert channels beyond the log (Slack, webhook), read as the embedded evaluator reads them."""
        s = self.settings
        if not s.sizewise_error_alerts:
            return None
        timeout = s.sizewise_error_alert_timeout_seconds
        retry = RetryPolicy(attempts=2, backoff_seconds=min(1.0, timeout), timeout_seconds=timeout)
        notifiers = configured_notifiers(s, retry, log_channel=False)  # the log has log_signal already
        if not notifiers:
            return None
        counter: Any = None
        with contextlib.suppress(Exception):
            counter = telemetry.instrument("sizewise.alerts.notifications")

        def outcome(channel: str, result: str) -> None:
            key = (channel, result)
            self.notify_outcomes[key] = self.notify_outcomes.get(key, 0) + 1
            if counter is not None:
                with contextlib.suppress(Exception):
                    counter.add(1, {NOTIFICATION_CHANNEL: channel, NOTIFICATION_OUTCOME: result})

        return ThreadedDispatcher(notifiers, outcome)

    def _make_store(self) -> ErrorStore:
        return ErrorStore(self.store_url, self.settings.error_samples_per_group)

    async def initialize(self) -> None:
        """Start the writer (it connects and creates tables itself) and the background-task hooks."""
        if self._started:
            return
        self._started = True
        self.writer.start()
        self._install_hooks()
        self._log_filter = install_log_scrubbing(self.scrubber)

    def remove_log_scrubbing(self) -> None:
        """Take the scrubbing filter off every logger and handler ``initialize()`` put it on."""
        filt = getattr(self, "_log_filter", None)
        if filt is None:
            return
        targets: list[logging.Filterer] = [logging.getLogger()]
        for name in SERVER_LOGGERS:
            targets.append(logging.getLogger(name))
            targets += logging.getLogger(name).handlers
        targets += logging.getLogger().handlers
        for target in targets:
            target.removeFilter(filt)
        self._log_filter = None

    async def shutdown(self) -> None:
        """Flush what is queued (bounded wait), stop the writer, release connections. Idempotent."""
        if not self._started and not self.writer.running:
            return
        self._started = False
        for undo in reversed(self._hooks):
            with contextlib.suppress(Exception):
                undo()
        self._hooks.clear()
        await asyncio.to_thread(self.writer.stop, 5.0)
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.stop, 2.0)
        with self._reader_lock:
            if self._reader is not None:
                self._reader.dispose()
                self._reader = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything captured so far is stored or dropped (tests, CLI, shutdown)."""
        return self.writer.flush(timeout)

    @property
    def store(self) -> ErrorStore:
        """A store for reads (the API); separate from the writer's, created on first use."""
        with self._reader_lock:
            if self._reader is not None and self._reader_pid != os.getpid():
                self._reader.engine.dispose(close=False)  # forked: the parent's connections are not ours
                self._reader = None
            if self._reader is None:
                store = self._make_store()
                store.create_schema()
                self._reader = store
                self._reader_pid = os.getpid()
            return self._reader

    def cleanup(self) -> dict[str, int]:
        """Apply retention now (the writer also runs it hourly)."""
        return self.store.cleanup(time.time() - self.settings.error_retention_hours * 3600.0)

    # --- alerts ---------------------------------------------------------------------------------
    def add_alert_listener(self, listener: AlertListener) -> None:
        """``listener(event_dict)`` is called (on the writer thread) for each alert signal."""
        self.alerts.add_listener(listener)

    def remove_alert_listener(self, listener: AlertListener) -> None:
        self.alerts.remove_listener(listener)

    def _on_batch(self, result: BatchResult) -> None:
        for sig in result.signals:
            if sig.kind in ("new_group", "regression"):  # the catalog: "seen for the first time (or regressed)"
                self._groups_new.add(1, {ERROR_SEVERITY: sig.severity})
        self.alerts.on_batch(result)

    # --- capture --------------------------------------------------------------------------------
    def capture_error(self, exception: BaseException | None = None, context: ErrorContext | None = None,
                      severity: ErrorSeverity | str | None = None, fingerprint: Sequence[str] | None = None,
                      *, message: str | None = None, source: str = "manual") -> str:
        """Capture one error; returns its id. Never raises, never blocks.

        Only the cheap, must-be-now part runs here (see the module docstring); scrubbing,
        fingerprinting and grouping happen on the writer thread.
        """
        error_id = new_error_id()
        try:
            self._capture(error_id, exception, context, severity, fingerprint, message, source)
        except Exception as exc:  # the tracker must never be the reason a request fails
            with contextlib.suppress(Exception):
                log.warning("error capture failed", error=type(exc).__name__)
        return error_id

    def _capture(self, error_id: str, exception: BaseException | None, context: ErrorContext | None,
                 severity: ErrorSeverity | str | None, custom: Sequence[str] | None, message: str | None,
                 source: str, status_type: str | None = None, ctx_data: dict[str, Any] | None = None,
                 http_status: int = 0) -> None:
        now = time.time()
        sev = (ErrorSeverity.parse(severity) if severity is not None else None) or _severity_of(exception)
        stack: list[StackEntry] | None = None
        frames: list[Frame] | None = None
        if exception is not None:
            error_type = error_type_of(exception)
            if self.capture_locals:  # opt-in: locals must be read now, before the frames move on
                frames = extract_frames(exception.__traceback__, with_locals=True)
        else:
            error_type = status_type or "CapturedMessage"
            message = message or "error captured without an exception"
            if not status_type:
                stack = stack_snapshot(3)  # the caller's stack: capture_error's caller is 3 up
        self._enqueue(PendingError(error_id, now, error_type, sev.value, exception, message, stack, frames,
                                   context.as_dict() if context is not None else ctx_data,
                                   tuple(custom) if custom else None, source), http_status=http_status)

    def _enqueue(self, pending: PendingError, mark_span: bool = True, http_status: int = 0) -> None:
        """The span's lazy event (when it records), then the queue. Request path: keep it lean.

        ``http_status``: a 5xx answered without an exception marks the span (status, ``error.type``)
        and adds no exception event: there is no exception to describe."""
        span = current_span()
        span_ctx = span.get_span_context()
        if span_ctx.is_valid:
            pending.span_context = span_ctx
            if span.is_recording():
                if http_status:
                    mark_server_error_status(span, http_status)
                else:
                    record_lazy_on_span(span, pending.error_type, pending.error_id,
                                        lambda: self._span_attributes(pending), mark=mark_span)
        if not self.writer.submit(pending):  # overload: counted here, the writer never sees it
            self._count_taken((pending,))
            self._count_dropped("queue_full", 1)

    def _metric_attributes(self, key: tuple[str, str]) -> dict[str, str]:
        attrs = self._metric_attrs.get(key)
        if attrs is None:
            with self._types_lock:
                error_type, sev = key
                metric_type = error_type if error_type in self._types else self._admit_type(error_type)
                attrs = self._metric_attrs.put(key, {"error.type": metric_type, ERROR_SEVERITY: sev})
        return attrs

    def _taken(self, items: Sequence[Any]) -> None:
        """The writer took a batch: count it, and refill the error id pool while off the request path."""
        top_up_error_ids()
        self._count_taken(items)

    def _count_taken(self, items: Sequence[Any]) -> None:
        """``sizewise_errors_total`` for captures leaving the queue: one add per attribute set, except
        a capture under a sampled span, added alone in its span's context (the exemplar links the trace)."""
        tally: dict[tuple[str, str], int] = {}
        for item in items:
            key = (item.error_type, item.severity)
            if isinstance(item, PendingError) and item.span_context is not None and item.sampled:
                span = NonRecordingSpan(item.span_context)
                self._errors.add(1, self._metric_attributes(key), context=trace.set_span_in_context(span))
            else:
                tally[key] = tally.get(key, 0) + 1
        for key, n in tally.items():
            self._errors.add(n, self._metric_attributes(key))

    # --- off the request path: the writer thread, or the span exporter's thread ------------------
    def _prepare(self, item: PendingError | ErrorEvent) -> ErrorEvent:
        """The scrubbed, fingerprinted event of a capture, built once."""
        if isinstance(item, ErrorEvent):
            return item
        event = item.event
        if event is not None:
            return event
        with _prepare_lock:
            if item.event is None:
                item.event = self._build_event(item)
                item.exception = item.tb = item.cause = item.stack = item.frames = None  # free the frames
            return item.event

    def _span_attributes(self, pending: PendingError) -> dict[str, Any]:
        ev = self._prepare(pending)
        return {
            "exception.type": ev.error_type,
            "exception.message": ev.message,
            "exception.stacktrace": ev.stacktrace,
            ERROR_ID_ATTR: ev.id,
            GROUP_ID_ATTR: ev.group_id,
        }

    def _build_event(self, p: PendingError) -> ErrorEvent:
        s = self.scrubber
        exception = p.exception
        error_type = p.error_type
        if exception is not None:
            try:
                raw_message = str(exception)
            except Exception:
                raw_message = f"<unprintable {type(exception).__name__}>"
            frames = p.frames if p.frames is not None else extract_frames(p.tb)
            clean_message = s.text(raw_message)
            stacktrace = format_stacktrace(exception, clean_message, s.text, snapshot=p)
        else:
            frames = frames_from_stack_snapshot(p.stack) if p.stack else []
            stacktrace = ""
            clean_message = s.text(p.message or "")
        title = parameterize(clean_message)
        if self.capture_locals:
            frames = [f if not f.locals else Frame(f.module, f.function, f.filename, f.lineno, f.in_app,
                                                   s.mapping(f.locals)) for f in frames]
        ctx = p.context or {}
        if _RAW_SCOPE in ctx:
            ctx = request_context(ctx[_RAW_SCOPE]).as_dict()
        route = ctx.get("endpoint")
        route_key = parameterize_route(route) if route else None
        group_id = fingerprint(error_type, frames, route_key, title, p.custom)
        user_id = ctx.get("user_id")
        user_hash = (hashlib.sha256(f"sizewise-user|{user_id}".encode()).hexdigest()[:32]
                     if user_id else None)
        return ErrorEvent(
            id=p.error_id, group_id=group_id, timestamp=p.timestamp, error_type=error_type,
            message=clean_message, title=f"{error_type.rsplit('.', 1)[-1]}: {title}"[:512],
            stacktrace=stacktrace, frames=frames, route=route_key, method=ctx.get("method"),
            severity=p.severity, context=s.mapping(ctx), user_hash=user_hash,
            trace_id=format(p.trace_id, "032x") if p.trace_id else None,
            span_id=format(p.span_id, "016x") if p.span_id else None, source=p.source)

    def _admit_type(self, error_type: str) -> str:
        if len(self._types) < MAX_ERROR_TYPES:
            self._types.add(error_type)
            return error_type
        return "other"

    def _count_dropped(self, reason: str, n: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        attrs = _DROP_ATTRS.get(reason) or {DROP_REASON: reason}
        self._dropped.add(n, attrs)

    # --- ASGI hooks (called by sizewise_otel.instruments.http_stats.MonitoringMiddleware) --------------------------
    def capture_request_exception(self, exc: BaseException, scope: dict[str, Any]) -> str:
        error_id = new_error_id()
        try:
            meta = _request_meta.get(type(exc))
            if meta is None:
                meta = _request_meta_of(exc)
            # opt-in: locals must be read now, before the frames move on
            frames = extract_frames(exc.__traceback__, with_locals=True) if self.capture_locals else None
            # The scope is copied (C speed), not read: route template and headers are the writer's work.
            raw = dict(scope)
            raw["headers"] = tuple(raw.get("headers") or ())
            self._enqueue(PendingError(error_id, time.time(), meta[0], meta[1], exc, None, None, frames,
                                       {_RAW_SCOPE: raw}, None, "request"), mark_span=False)
        except Exception as err:
            with contextlib.suppress(Exception):
                log.warning("error capture failed", error=type(err).__name__)
        return error_id

    def capture_server_error_status(self, scope: dict[str, Any], status: int) -> None:
        error_id = new_error_id()
        try:
            snap = scope_snapshot(scope)
            if snap["endpoint"] in STATUS_EXEMPT_ROUTES:
                return
            self._capture(error_id, None, None, ErrorSeverity.HIGH, None, f"HTTP {int(status)} answered",
                          "response", status_type=f"HTTPServerError{int(status)}", ctx_data=snap,
                          http_status=int(status))
        except Exception as exc:
            with contextlib.suppress(Exception):
                log.warning("error capture failed", error=type(exc).__name__)

    # --- background work --------------------------------------------------------------------------
    def watch(self, fn: F) -> F:
        """Decorator for background jobs: exceptions are captured, then re-raised."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    self.capture_error(exc, ErrorContext(tags={"task": fn.__qualname__}), source="task")
                    raise
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self.capture_error(exc, ErrorContext(tags={"task": fn.__qualname__}), source="task")
                raise
        return wrapper  # type: ignore[return-value]

    def _install_hooks(self) -> None:
        """Unhandled exceptions in asyncio tasks and threads are captured too (previous hooks chained)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            previous = loop.get_exception_handler()

            def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                exc = context.get("exception")
                if isinstance(exc, Exception):
                    self.capture_error(exc, ErrorContext(tags={"origin": "asyncio"}), source="task")
                if previous is not None:
                    previous(lp, context)
                else:
                    lp.default_exception_handler(context)

            loop.set_exception_handler(handler)
            self._hooks.append(lambda: loop.set_exception_handler(previous))
        prev_thread_hook = threading.excepthook

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if isinstance(args.exc_value, Exception):
                self.capture_error(args.exc_value, ErrorContext(tags={"origin": "thread"}), source="task")
            prev_thread_hook(args)

        threading.excepthook = thread_hook

        def undo_thread_hook() -> None:
            if threading.excepthook is thread_hook:
                threading.excepthook = prev_thread_hook

        self._hooks.append(undo_thread_hook)

    # --- HTTP -------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        from sizewise_otel.errors.api import build_router

        return build_router(self)

    def diagnostics(self) -> dict[str, Any]:
        return {
            "store": _redact_url(self.store_url), "queue_depth": self.writer.depth,
            "queue_size": self.settings.error_queue_size, "writer_running": self.writer.running,
            "store_ok": self.writer.store_ok, "last_store_error": self.writer.last_error,
            "dropped": dict(self.dropped), "stored": self.writer.stats["stored"],
        }


_RAW_SCOPE = "\x00scope"


def _route_template(scope: dict[str, Any]) -> str:
    """The HTTP series' ``http.route`` (mount prefixes included), ``<unmatched>`` when none matched."""
    return route_template(scope) or "<unmatched>"


def scope_snapshot(scope: dict[str, Any]) -> dict[str, Any]:
    """The request path's copy of what :func:`request_context` needs: references, nothing decoded."""
    return {"endpoint": _route_template(scope), _RAW_SCOPE: {
        "route": scope.get("route"), "method": scope.get("method"), "headers": tuple(scope.get("headers") or ())}}


def request_context(scope: dict[str, Any]) -> ErrorContext:
    """Context from an ASGI scope: the route *template* (never the raw path), method, a few headers."""
    template = _route_template(scope)
    headers = headers_named(scope.get("headers") or (), _CAPTURED, max_len=512)
    request_id = headers.get("x-request-id")
    return ErrorContext(endpoint=template, method=str(scope.get("method") or "") or None,
                        request_id=request_id, user_agent=headers.get("user-agent"), headers=headers)


def _redact_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"


# --- the process singleton --------------------------------------------------------------------

_tracker: ErrorTracker | None = None
_tracker_lock = threading.Lock()
_live_trackers: weakref.WeakSet[ErrorTracker] = weakref.WeakSet()


def initialize_error_tracker(settings: Settings | None = None,
                             telemetry: Telemetry | None = None) -> ErrorTracker:
    """The process's ErrorTracker, created on first call (later arguments are ignored)."""
    global _tracker
    with _tracker_lock:
        if _tracker is None:
            telemetry = telemetry or get_telemetry(settings)
            _tracker = ErrorTracker(settings or telemetry.settings, telemetry)
        return _tracker


def get_error_tracker() -> ErrorTracker:
    return _tracker or initialize_error_tracker()


def reset_error_tracker() -> None:
    """Forget the singleton (tests; a process that reconfigures). Stops its writer."""
    global _tracker
    with _tracker_lock:
        old, _tracker = _tracker, None
    if old is not None:
        old.writer.stop(2.0)


@atexit.register
def _flush_at_exit() -> None:
    for tracker in list(_live_trackers):
        if tracker.writer.running and tracker.writer._pid == os.getpid():
            with contextlib.suppress(Exception):
                tracker.writer.flush(2.0)
