"""Deciding a span before the SDK does the work: the SDK sampler's semantics at a fraction of the cost.

Two gates, both reaching exactly the decision (and the ids) ``Tracer.start_span`` would:

- :class:`SpanGate` for CLIENT spans (SQL, Redis): under a non-sampled parent the span is not
  started at all; a root operation draws its trace id and applies the ratio rule first.
- :class:`ServerSpanGate` for the HTTP layer's SERVER span: a request that will not be sampled
  (90 % at the default 10 % ratio) still needs a span context, so its ids travel downstream and
  children follow the decision; the gate builds the very ``NonRecordingSpan`` the SDK would build
  (same trace id rule, span id draw, trace flags and trace state) without the SDK's sampler
  objects, and hands every other case to ``Tracer.start_span``.

A span either gate decides is sampled (a kept root, or a child of a sampled parent under the
default ``ALWAYS_ON``) is built by :class:`~sizewise_otel.fastpath.sampled_span.SampledSpans`: the
SDK's own span without the sampler run a second time.

Both fall back to the SDK whenever the configuration is not one they mirror (another sampler,
another id generator, a disabled tracer, the SDK's own span metrics switched on).
"""

from __future__ import annotations

import threading
import weakref
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.context.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanKind, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY

from sizewise_otel.fastpath.detect import enabled
from sizewise_otel.fastpath.sampled_span import SampledSpans, valid_span_context

try:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
except ImportError:  # pragma: no cover - API-only install
    RandomIdGenerator = None  # type: ignore[assignment,misc]


def _context_var() -> Any:
    """The ``ContextVar`` behind OTel's default runtime context, or ``None`` for any other runtime."""
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime = otel_context._RUNTIME_CONTEXT
        return runtime._current_context if type(runtime) is ContextVarsRuntimeContext else None
    except (ImportError, AttributeError):  # pragma: no cover - a changed API
        return None


# With the default contextvars runtime the current context is one ContextVar read: the helpers
# below skip the API's call chain (get_value, get_current, the runtime object), about four Python
# calls a use. Any other runtime context keeps the API functions.
_CONTEXT_VAR = _context_var() if enabled() else None
_INVALID_SPAN = trace.INVALID_SPAN


def _current_context_reader() -> Any:
    if _CONTEXT_VAR is None:  # pragma: no cover - a custom runtime context
        from opentelemetry import context as otel_context

        return otel_context.get_current
    return _CONTEXT_VAR.get


_current_context = _current_context_reader()


# Classes already seen to be ``trace.Span``s: ``isinstance`` against the ABC is two Python calls (the
# ABC's ``__instancecheck__``) a lookup, and a request looks the current span up several times. An
# ABC never unregisters a class, so a class once found to be a span stays one. Bounded.
_SPAN_CLASSES: set[type] = set()
_MAX_SPAN_CLASSES = 64


def current_span() -> Any:
    """``trace.get_current_span()``: the same lookup and the same ``INVALID_SPAN`` fallback."""
    span = _current_context().get(_SPAN_KEY)
    if span is None:
        return _INVALID_SPAN
    cls = span.__class__
    if cls in _SPAN_CLASSES:
        return span
    if not isinstance(span, trace.Span):
        return _INVALID_SPAN
    if len(_SPAN_CLASSES) < _MAX_SPAN_CLASSES:
        _SPAN_CLASSES.add(cls)
    return span


# What the last span asked about showed: (the context's span value, the span or INVALID_SPAN, valid,
# sampled, remote). A request's metrics, cache and client gates ask about the same span several times.
# Held by reference, so an identity match can never be a new object at a freed one's address; replaced
# as one tuple, so threads read a consistent set. A span's context (so these flags) never changes.
_last_seen: tuple[Any, Any, bool, bool, bool] = (None, _INVALID_SPAN, False, False, False)


def _current_span_flags() -> tuple[Any, Any, bool, bool, bool]:
    """``_last_seen`` for the current span, looked up afresh only when the context holds another value."""
    global _last_seen
    raw = _current_context().get(_SPAN_KEY)
    last = _last_seen
    if raw is last[0]:
        return last
    span = current_span()
    ctx = span.get_span_context()
    found = (raw, span, ctx.is_valid, ctx.trace_flags.sampled, ctx.is_remote)
    if span is not _INVALID_SPAN or raw is None:  # not a span (yet: an ABC can register its class later)
        _last_seen = found
    return found


def current_sampled_span() -> Any:
    """The current span when its context is sampled (what the SDK's trace-based exemplar filter takes),
    else ``None``."""
    _raw, span, _valid, sampled, _remote = _current_span_flags()
    return span if sampled else None


def enter_span(span: Any, parent: Any = None) -> tuple[Any, Any]:
    """``context.attach(trace.set_span_in_context(span, parent))``, the same new context made current,
    and the context from before it: ``(context before, token that restores it)``."""
    var = _CONTEXT_VAR
    if var is None:  # pragma: no cover - a custom runtime context
        from opentelemetry import context as otel_context

        return otel_context.get_current(), otel_context.attach(trace.set_span_in_context(span, parent))
    outer = var.get()
    values = (parent if parent is not None else outer).copy()  # set_value's own rule
    values[_SPAN_KEY] = span
    return outer, var.set(Context(values))


async def send_in_context(context: Any, send: Any, message: Any) -> None:
    """``await send(message)`` with ``context`` current, then the context from before again."""
    var = _CONTEXT_VAR
    if var is None:  # pragma: no cover - a custom runtime context
        from opentelemetry import context as otel_context

        token = otel_context.attach(context)
        try:
            await send(message)
        finally:
            otel_context.detach(token)
        return
    token = var.set(context)
    try:
        await send(message)
    finally:
        detach(token)


def detach(token: Any) -> None:
    """``context.detach(token)``; a token from another context is reported the way OTel reports it."""
    var = _CONTEXT_VAR
    try:
        if var is None:  # pragma: no cover - a custom runtime context
            raise ValueError
        var.reset(token)
    except (ValueError, RuntimeError, TypeError):
        from opentelemetry import context as otel_context

        otel_context.detach(token)


class SpanGate:
    """Starts a CLIENT span below the current context only when it can be sampled.

    Decided before any SDK work, with the SDK's own sampler semantics:

    - under a valid, non-sampled parent, a parent-based sampler whose ``*_parent_not_sampled``
      samplers are ``ALWAYS_OFF`` (the default) drops the child: no span is started at all (the
      SDK would still generate ids, run the sampler and build a ``NonRecordingSpan``);
    - with no valid parent the operation is a root span. When the root sampler is the SDK's
      ``TraceIdRatioBased`` (the default ``parentbased_traceidratio``), the trace id is drawn
      first from the provider's id generator and the ratio rule applied to it: a dropped root
      costs one random draw. A kept root is started with exactly that trace id (this tracer's
      id generator hands it over), so the SDK sampler runs on it and reaches the same decision:
      the sampled fraction and the ids are what the SDK alone would produce;
    - anything else (another sampler, a custom parent-based configuration) goes through
      ``tracer.start_span`` and the SDK decides.

    ``roots=False`` starts no span at all without a valid parent (a health probe's ``PING``, a
    background job's query): single-span traces nobody asked for, costing a span each. The
    instrumentation's duration metric still counts every operation.
    """

    def __init__(self, tracer_provider: Any, tracer: Any = None, *, roots: bool = True) -> None:
        fast = enabled()
        self.roots = roots
        public_sampler = getattr(tracer_provider, "sampler", None)
        sampler = public_sampler if fast else None
        self.drop_local, self.drop_remote = (_unsampled_parent_dropped(sampler) if fast
                                             else _unsampled_parent_dropped_public(public_sampler))
        self.tracer = tracer
        self.root_bound: int | None = None
        self._ids: _PresetTraceIds | None = None
        self._inline_draw = False
        # A span decided sampled here is built directly (see sampled_span) where that is exact.
        self.keep_local, self.keep_remote = _sampled_parent_kept(sampler)
        sampled = SampledSpans(tracer) if fast and tracer is not None and _mirrors_sdk(tracer) else None
        self._sampled = sampled if sampled is not None and sampled.usable else None
        root = _ratio_root(sampler)
        if tracer is not None and root is not None and hasattr(tracer, "id_generator"):
            self._ids = _preset_ids(tracer)
            self._draw = self._ids.inner.generate_trace_id
            if type(self._ids.inner) is RandomIdGenerator:
                self._draw = _random_trace_id  # the same draw, one call less
                self._inline_draw = True
            self.root_bound = root.bound
            self._limit = root.TRACE_ID_LIMIT

    def skip(self) -> bool:
        """True when a valid, non-sampled parent makes the sampler drop any child, or when there is
        no valid parent and root spans are off."""
        _raw, _span, valid, sampled, remote = _current_span_flags()
        if not valid:
            return not self.roots
        if sampled:
            return False
        return self.drop_remote if remote else self.drop_local

    def start(self, name: str, attributes: dict[str, Any]) -> Any:
        """A recording CLIENT span (``attributes`` set), or ``None`` when it would not be sampled."""
        if self.skip():  # the usual case, one lookup
            return None
        span = current_span()
        ids = self._ids
        sampled = self._sampled
        if span is not _INVALID_SPAN and (ctx := span.get_span_context()).is_valid:
            if not ctx.trace_flags.sampled:
                if self.drop_remote if ctx.is_remote else self.drop_local:
                    return None
            elif sampled is not None and (self.keep_remote if ctx.is_remote else self.keep_local) \
                    and self.tracer._is_enabled():
                return sampled.child(name, SpanKind.CLIENT, ctx, getrandbits(64) or _random_span_id(), None,
                                     attributes)
        elif not self.roots:
            return None
        elif ids is not None:
            # RandomIdGenerator's draw inline (0, the invalid id, is drawn again), else the generator's
            trace_id = (getrandbits(128) or _random_trace_id()) if self._inline_draw else self._draw()
            if trace_id & self._limit >= self.root_bound:  # TraceIdRatioBased's own rule
                return None
            if sampled is not None and self.tracer._is_enabled():
                return sampled.root(name, SpanKind.CLIENT, trace_id, getrandbits(64) or _random_span_id(), None,
                                    attributes)
            span = ids.start_span(self.tracer, trace_id, name, kind=SpanKind.CLIENT, attributes=attributes)
            return span if span.is_recording() else None
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return span if span.is_recording() else None


def _random_trace_id() -> int:
    """``RandomIdGenerator.generate_trace_id``: 128 random bits, never the invalid id 0."""
    trace_id = getrandbits(128)
    while trace_id == 0:
        trace_id = getrandbits(128)
    return trace_id


class _PresetTraceIds:
    """An SDK ``IdGenerator`` handing out one pre-drawn trace id, else delegating."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.local = threading.local()

    def generate_trace_id(self) -> int:
        trace_id = getattr(self.local, "trace_id", None)
        if trace_id is not None:
            self.local.trace_id = None
            return trace_id
        return self.inner.generate_trace_id()

    def start_span(self, tracer: Any, trace_id: int, name: str, **kwargs: Any) -> Any:
        """``tracer.start_span`` for a kept root, with ``trace_id`` (already drawn) as its trace id:
        the SDK's sampler then sees the very id the ratio rule was applied to."""
        self.local.trace_id = trace_id
        try:
            return tracer.start_span(name, **kwargs)
        finally:
            self.local.trace_id = None

    def generate_span_id(self) -> int:
        return self.inner.generate_span_id()

    def is_trace_id_random(self) -> bool:
        check = getattr(self.inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False


def _ratio_root(sampler: Any) -> Any:
    """The ``TraceIdRatioBased`` root of a parent-based sampler, else ``None``."""
    try:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:  # pragma: no cover - API-only install
        return None
    root = getattr(sampler, "_root", None) if isinstance(sampler, ParentBased) else None
    if type(root) is TraceIdRatioBased and isinstance(getattr(root, "bound", None), int):
        return root
    return None


def _parent_rule(sampler: Any, *, sampled: bool) -> tuple[bool, bool]:
    """(local, remote): whether a parent-based sampler hands every child of a sampled parent to
    ``ALWAYS_ON`` (``sampled=True``), or of a non-sampled one to ``ALWAYS_OFF`` (the defaults)."""
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
    except ImportError:  # pragma: no cover - API-only install
        return False, False
    if not isinstance(sampler, ParentBased):
        return False, False
    decision, suffix = (Decision.RECORD_AND_SAMPLE, "sampled") if sampled else (Decision.DROP, "not_sampled")

    def static(inner: Any) -> bool:
        return isinstance(inner, StaticSampler) and getattr(inner, "_decision", None) is decision

    return (static(getattr(sampler, f"_local_parent_{suffix}", None)),
            static(getattr(sampler, f"_remote_parent_{suffix}", None)))


def _unsampled_parent_dropped(sampler: Any) -> tuple[bool, bool]:
    return _parent_rule(sampler, sampled=False)


def _sampled_parent_kept(sampler: Any) -> tuple[bool, bool]:
    return _parent_rule(sampler, sampled=True)


def _unsampled_parent_dropped_public(sampler: Any) -> tuple[bool, bool]:
    """:func:`_unsampled_parent_dropped` from public API only: the sampler's own description."""
    try:
        from opentelemetry.sdk.trace.sampling import ParentBased
        description = sampler.get_description() if isinstance(sampler, ParentBased) else ""
    except Exception:
        return False, False
    return (description.endswith(",localParentNotSampled:AlwaysOffSampler}"),
            ",remoteParentNotSampled:AlwaysOffSampler," in description)


# Trace flags of a span the sampler dropped: not sampled, plus the W3C level-2 "random trace id"
# flag the SDK sets when the trace id came from a random generator (or the parent says so).
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSAMPLED_RANDOM = TraceFlags(TraceFlags.DEFAULT | getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


_DEFAULT_TRACE_STATE = trace.DEFAULT_TRACE_STATE


def _random_span_id() -> int:
    """``RandomIdGenerator.generate_span_id``: 64 random bits, never the invalid id 0."""
    span_id = getrandbits(64)
    while span_id == 0:
        span_id = getrandbits(64)
    return span_id


_WRAPPED: weakref.WeakSet[Any] = weakref.WeakSet()  # tracers whose id generator a gate wrapped


def _preset_ids(tracer: Any) -> _PresetTraceIds:
    """The tracer's pre-drawn-trace-id generator, installed once per tracer."""
    ids = tracer.id_generator
    if not isinstance(ids, _PresetTraceIds):
        ids = _PresetTraceIds(ids)
        tracer.id_generator = ids  # this tracer only: every tracer has its own attribute
        _WRAPPED.add(tracer)
    return ids


def _mirrors_sdk(tracer: Any) -> bool:
    """True when ``tracer`` is the SDK's, with a random id generator and no span self-metrics."""
    if RandomIdGenerator is None or not hasattr(tracer, "id_generator") or not hasattr(tracer, "_is_enabled"):
        return False
    inner = tracer.id_generator
    inner = inner.inner if isinstance(inner, _PresetTraceIds) else inner
    metrics = type(getattr(tracer, "_tracer_metrics", None)).__name__
    return type(inner) is RandomIdGenerator and metrics == "NoOpTracerMetrics"


class ServerSpanGate:
    """The request's SERVER span: the SDK's when it records, else the SDK's non-recording span built
    directly (see the module docstring). ``start(name, context, attributes)`` has the meaning of
    ``tracer.start_span(name, context=context, kind=SpanKind.SERVER, attributes=attributes)``.
    """

    def __init__(self, tracer_provider: Any, tracer: Any) -> None:
        self.tracer = tracer
        sampler = getattr(tracer_provider, "sampler", None)
        self.drop_local, self.drop_remote = _unsampled_parent_dropped(sampler)
        root = _ratio_root(sampler)
        self.fast = enabled() and _mirrors_sdk(tracer)
        self.keep_local, self.keep_remote = _sampled_parent_kept(sampler)
        sampled = SampledSpans(tracer) if self.fast else None
        self._sampled = sampled if sampled is not None and sampled.usable else None
        self.root_bound: int | None = None
        if self.fast and root is not None:
            self._ids = _preset_ids(tracer)
            self.root_bound = root.bound
            self._limit = root.TRACE_ID_LIMIT

    def start(self, name: str, context: Any, attributes: dict[str, Any] | None = None) -> Any:
        tracer = self.tracer
        if self.fast and tracer._is_enabled():
            span = (context if context is not None else _current_context()).get(_SPAN_KEY)
            # (no span at all, the usual root, skips the ABC isinstance check)
            ctx = span.get_span_context() if span is not None and isinstance(span, trace.Span) else None
            if ctx is not None and ctx.is_valid:
                if not ctx.trace_flags.sampled:
                    if self.drop_remote if ctx.is_remote else self.drop_local:
                        # ParentBased -> ALWAYS_OFF: the parent's trace id and trace state, a new span id
                        flags = _UNSAMPLED_RANDOM if ctx.trace_flags.random_trace_id else _UNSAMPLED
                        return NonRecordingSpan(valid_span_context(ctx.trace_id, getrandbits(64) or _random_span_id(),
                                                                   flags, ctx.trace_state))
                elif self._sampled is not None and (self.keep_remote if ctx.is_remote else self.keep_local):
                    # ParentBased -> ALWAYS_ON: sampled, as its parent
                    return self._sampled.child(name, SpanKind.SERVER, ctx, getrandbits(64) or _random_span_id(),
                                               context, attributes)
            elif self.root_bound is not None:
                trace_id = getrandbits(128) or _random_trace_id()
                if trace_id & self._limit >= self.root_bound:  # TraceIdRatioBased drops this root
                    return NonRecordingSpan(valid_span_context(trace_id, getrandbits(64) or _random_span_id(),
                                                               _UNSAMPLED_RANDOM, _DEFAULT_TRACE_STATE))
                if self._sampled is not None:
                    return self._sampled.root(name, SpanKind.SERVER, trace_id, getrandbits(64) or _random_span_id(),
                                              context, attributes)
                return self._ids.start_span(tracer, trace_id, name, context=context, kind=SpanKind.SERVER,
                                            attributes=attributes)
        return tracer.start_span(name, context=context, kind=SpanKind.SERVER, attributes=attributes)


def restore_id_generators() -> int:
    """Give every tracer a gate wrapped its own id generator back (tracers are shared per scope, so
    this is for when no gate is in use any more); returns how many were restored."""
    restored = 0
    for tracer in list(_WRAPPED):
        ids = getattr(tracer, "id_generator", None)
        if isinstance(ids, _PresetTraceIds):
            tracer.id_generator = ids.inner
            restored += 1
        _WRAPPED.discard(tracer)
    return restored
