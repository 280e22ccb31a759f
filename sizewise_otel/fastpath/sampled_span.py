"""Starting a span a gate already decided is sampled: the SDK's own span, without the sampler asked again.

Once a span gate knows a span will be sampled (a root whose trace id passed ``TraceIdRatioBased``'s
rule, or a child of a sampled parent under ``ParentBased``'s default ``ALWAYS_ON``),
``Tracer.start_span`` would look the parent up again, run the sampler again to the same decision,
build a ``SamplingResult``, re-validate the ids and clean the attributes again: about a third of a
sampled span's start. :class:`SampledSpans` builds the very span that call builds (the SDK's
``_Span``, the same fields, started through the same processors), with the ids the gate drew.

Usable only where it is exact: the SDK's tracer with a random id generator and no span self-metrics
(what the gates mirror already), and an SDK whose ``start_span`` builds, field for field, what this
module builds. That is checked once per process by :func:`_probe`, which starts a span both ways on a
throwaway provider with fixed ids and compares every field. Anything else: ``tracer.start_span``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from sizewise_otel.fastpath.detect import probed_once
from sizewise_otel.fastpath.spans import set_span_attributes

_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_DEFAULT_TRACE_STATE = trace.DEFAULT_TRACE_STATE


def _span_context_builder() -> Any:
    """``SpanContext(trace_id, span_id, False, flags, state)`` for ids already known valid.

    The API's ``__new__`` re-checks both ids against their ranges; a drawn non-zero id is in range
    by construction, so the tuple is built directly when the probe below shows the API's layout
    (the very tuple, equal and with the same fields); otherwise the API's constructor.
    """
    def direct(trace_id: int, span_id: int, flags: Any, state: Any) -> Any:
        return tuple.__new__(SpanContext, (trace_id, span_id, False, flags, state, True))

    def public(trace_id: int, span_id: int, flags: Any, state: Any) -> Any:
        return SpanContext(trace_id, span_id, False, flags, state)

    try:
        flags = TraceFlags(TraceFlags.DEFAULT)
        probe, expected = direct(7, 9, flags, _DEFAULT_TRACE_STATE), public(7, 9, flags, _DEFAULT_TRACE_STATE)
        fields = ("trace_id", "span_id", "is_remote", "trace_flags", "trace_state", "is_valid")
        if tuple(probe) == tuple(expected) and all(getattr(probe, f) == getattr(expected, f) for f in fields):
            return direct
    except Exception:  # pragma: no cover - another API layout
        pass
    return public  # pragma: no cover - another API layout


valid_span_context = _span_context_builder()
# Fields of a started span that differ between any two spans (or are per-span objects): compared by
# value where they hold data, skipped where they are a lock or a timestamp.
_VOLATILE = frozenset({"_start_time", "_end_time", "_lock", "_record_end_metrics"})


class SampledSpans:
    """``tracer.start_span`` for a span already decided sampled (``usable`` says whether it applies)."""

    def __init__(self, tracer: Any) -> None:
        fields = _tracer_fields(tracer) if _sdk_matches() else None
        self.usable = fields is not None
        if fields is not None:
            self._span_cls, self._fields = _span_class(), fields

    def root(self, name: str, kind: SpanKind, trace_id: int, span_id: int, context: Any,
             attributes: Mapping[str, Any] | None) -> Any:
        """A sampled root span with these ids (``context``: what ``start_span`` was given)."""
        own = valid_span_context(trace_id, span_id, _ROOT_FLAGS, _DEFAULT_TRACE_STATE)
        return self._start(name, kind, own, None, context, attributes)

    def child(self, name: str, kind: SpanKind, parent: SpanContext, span_id: int, context: Any,
              attributes: Mapping[str, Any] | None) -> Any:
        """A sampled child of the sampled ``parent`` span context."""
        flags = _CHILD_RANDOM_FLAGS if parent.trace_flags & _RANDOM else _CHILD_FLAGS
        own = valid_span_context(parent.trace_id, span_id, flags, parent.trace_state)
        return self._start(name, kind, own, parent, context, attributes)

    def _start(self, name: str, kind: SpanKind, own: SpanContext, parent: SpanContext | None, context: Any,
               attributes: Mapping[str, Any] | None) -> Any:
        span = self._span_cls(name=name, context=own, parent=parent, kind=kind, links=(), **self._fields)
        if attributes:
            set_span_attributes(span, attributes)  # plain values are stored without cleaning them again
        span.start(start_time=None, parent_context=context)
        return span


def _span_class() -> Any:
    from opentelemetry.sdk.trace import _Span

    return _Span


def _tracer_fields(tracer: Any) -> dict[str, Any] | None:
    """The constructor arguments ``Tracer.start_span`` takes from the tracer, or ``None`` if one is missing."""
    try:
        fields = {"sampler": tracer.sampler, "resource": tracer.resource, "span_processor": tracer.span_processor,
                  "instrumentation_info": tracer.instrumentation_info, "limits": tracer._span_limits,
                  "instrumentation_scope": tracer._instrumentation_scope, "attributes": None}
    except AttributeError:
        return None
    if _END_METRICS:
        fields["record_end_metrics"] = None  # the no-op tracer metrics (the gates require them) record nothing
    return fields


class _FixedIds:
    """An ``IdGenerator`` for the probe: the same ids every time."""

    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return True


def _comparable(span: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(span).items():
        if key in _VOLATILE:
            continue
        if key in ("_attributes", "_events", "_links"):
            value = list(value.items()) if hasattr(value, "items") else list(value)
        out[key] = value
    return out


_ROOT_FLAGS = TraceFlags(TraceFlags.SAMPLED | _RANDOM)
_CHILD_FLAGS = TraceFlags(TraceFlags.SAMPLED)
_CHILD_RANDOM_FLAGS = TraceFlags(TraceFlags.SAMPLED | _RANDOM)
_END_METRICS = False


def _probe() -> bool:
    """Start a root and two children both ways on a throwaway provider; True when every field agrees."""
    global _ROOT_FLAGS, _CHILD_FLAGS, _CHILD_RANDOM_FLAGS, _END_METRICS
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=Resource({"probe": "sampled_span"}),
                              id_generator=_FixedIds(), shutdown_on_exit=False)
    tracer = provider.get_tracer("sizewise.fastpath.probe", "1", schema_url="https://example.invalid/schema")
    span_cls = _span_class()
    _END_METRICS = "record_end_metrics" in inspect.signature(span_cls.__init__).parameters
    fields = _tracer_fields(tracer)
    if fields is None:
        return False
    built = SampledSpans.__new__(SampledSpans)
    built.usable, built._span_cls, built._fields = True, span_cls, fields
    attributes = {"http.request.method": "GET", "server.port": 8000, "probe.ratio": 0.5, "probe.flag": True}
    reference = tracer.start_span("probe", kind=SpanKind.SERVER, attributes=attributes)
    _ROOT_FLAGS = reference.get_span_context().trace_flags
    ours = built.root("probe", SpanKind.SERVER, _FixedIds.trace_id, _FixedIds.span_id, None, attributes)
    if _comparable(ours) != _comparable(reference):
        return False
    for parent_flags in (TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.SAMPLED | _RANDOM)):
        parent = SpanContext(0x1234, 0x5678, True, parent_flags)
        context = set_span_in_context(NonRecordingSpan(parent))
        reference = tracer.start_span("child", context=context, kind=SpanKind.CLIENT, attributes=attributes)
        flags = reference.get_span_context().trace_flags
        if parent_flags & _RANDOM:
            _CHILD_RANDOM_FLAGS = flags
        else:
            _CHILD_FLAGS = flags
        ours = built.child("child", SpanKind.CLIENT, parent, _FixedIds.span_id, context, attributes)
        if _comparable(ours) != _comparable(reference):
            return False
    return True


_sdk_matches = probed_once(_probe)  # whether start_span builds what SampledSpans builds
