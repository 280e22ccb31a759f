"""ServerSpanGate reaches the SDK's decision and ids; enter_span/detach match the context API."""

from __future__ import annotations

import random

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from sizewise_otel.fastpath import enabled
from sizewise_otel.fastpath.spangate import (
    ServerSpanGate,
    SpanGate,
    current_sampled_span,
    current_span,
    detach,
    enter_span,
    send_in_context,
)


def _pair(sampler: object) -> tuple[ServerSpanGate, trace.Tracer]:
    """A gate over one provider and a plain SDK tracer over another, same sampler."""
    gated = TracerProvider(sampler=sampler)
    plain = TracerProvider(sampler=sampler)
    return ServerSpanGate(gated, gated.get_tracer("gate")), plain.get_tracer("sdk")


def _same(seed: int, gate: ServerSpanGate, sdk: trace.Tracer, context: object = None) -> tuple[object, object]:
    # RandomIdGenerator draws from the random module: one seed, the same draws on both sides.
    random.seed(seed)
    ours = gate.start("GET", context)
    random.seed(seed)
    theirs = sdk.start_span("GET", context=context, kind=SpanKind.SERVER)
    return ours, theirs


@pytest.mark.parametrize("ratio", [0.1, 0.5])
def test_roots_get_the_sdks_decision_ids_and_flags(ratio: float) -> None:
    gate, sdk = _pair(ParentBased(TraceIdRatioBased(ratio)))
    # Without the fast path the gate hands every root to the SDK: the same decisions either way.
    assert gate.fast == enabled() and (gate.root_bound is not None) == gate.fast
    kept = 0
    for seed in range(300):
        ours, theirs = _same(seed, gate, sdk)
        assert ours.is_recording() == theirs.is_recording()
        assert ours.get_span_context() == theirs.get_span_context()  # ids, flags, trace state
        assert ours.get_span_context().trace_flags == theirs.get_span_context().trace_flags
        kept += ours.is_recording()
        if not ours.is_recording():
            assert type(ours) is NonRecordingSpan
    assert 0.5 * ratio * 300 < kept < 1.6 * ratio * 300


def test_unsampled_remote_parent_keeps_trace_id_state_and_random_flag() -> None:
    gate, sdk = _pair(ParentBased(TraceIdRatioBased(0.1)))
    state = TraceState([("vendor", "abc")])
    for flags in (TraceFlags(0), TraceFlags(0x02)):
        parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=flags, trace_state=state)
        ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        ours, theirs = _same(7, gate, sdk, ctx)
        assert not ours.is_recording() and not theirs.is_recording()
        assert ours.get_span_context() == theirs.get_span_context()
        assert ours.get_span_context().trace_id == 0x1234
        assert ours.get_span_context().trace_state == state
        assert ours.get_span_context().trace_flags == theirs.get_span_context().trace_flags


def test_sampled_parent_and_the_current_context_go_through_the_sdk() -> None:
    gate, sdk = _pair(ParentBased(TraceIdRatioBased(0.0)))
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    ours, theirs = _same(3, gate, sdk, ctx)
    assert ours.is_recording() and theirs.is_recording()
    assert ours.parent == parent and ours.kind is SpanKind.SERVER
    # No explicit context: the current one is the parent, as for tracer.start_span(context=None).
    token = otel_context.attach(ctx)
    try:
        child = gate.start("GET", None)
    finally:
        otel_context.detach(token)
    assert child.is_recording() and child.get_span_context().trace_id == 0xABC


def test_configurations_it_does_not_mirror_fall_back_to_the_sdk() -> None:
    class Sequential(IdGenerator):
        def __init__(self) -> None:
            self.n = 0

        def generate_span_id(self) -> int:
            self.n += 1
            return self.n

        def generate_trace_id(self) -> int:
            self.n += 1
            return self.n

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)), id_generator=Sequential())
    gate = ServerSpanGate(provider, provider.get_tracer("custom"))
    assert not gate.fast
    span = gate.start("GET", None)
    assert span.get_span_context().trace_id == 1 and span.get_span_context().span_id == 2  # the SDK's ids
    always = TracerProvider(sampler=ALWAYS_ON)
    gate = ServerSpanGate(always, always.get_tracer("on"))
    assert gate.root_bound is None and gate.start("GET", None).is_recording()


def test_enter_span_and_send_in_context_match_the_context_api() -> None:
    import asyncio

    span = NonRecordingSpan(SpanContext(1, 2, is_remote=False))
    parent = baggage.set_baggage("tenant", "t1")
    before = otel_context.get_current()
    outer, token = enter_span(span, parent)
    try:
        assert outer is before  # the context from before, for the last chunk
        assert current_span() is span and trace.get_current_span() is span
        assert baggage.get_baggage("tenant") == "t1"  # the parent's other values are kept
        assert otel_context.get_current() == trace.set_span_in_context(span, parent)
        assert type(otel_context.get_current()) is otel_context.Context
        seen: list[object] = []

        async def send(message: object) -> None:
            seen.append(trace.get_current_span())

        async def respond() -> object:
            await send_in_context(outer, send, {"type": "http.response.body"})
            return trace.get_current_span()  # what runs after the send: the request's span again

        assert asyncio.run(respond()) is span
        assert seen == [trace.INVALID_SPAN]
    finally:
        detach(token)
    assert otel_context.get_current() == before
    _, token = enter_span(span)  # no parent: the current context is the base
    assert current_span() is span
    detach(token)
    assert current_span() is trace.INVALID_SPAN
    # An empty context (what a propagator extracts from a malformed header) is a base of its own,
    # as in set_value: the current context's values are not merged in.
    entered = otel_context.attach(parent)
    try:
        _, token = enter_span(span, otel_context.Context())
        assert otel_context.get_current() == trace.set_span_in_context(span, otel_context.Context())
        assert baggage.get_baggage("tenant") is None
        detach(token)
    finally:
        otel_context.detach(entered)


def test_span_contexts_built_directly_equal_the_apis() -> None:
    from sizewise_otel.fastpath.sampled_span import valid_span_context as _valid_span_context

    state = TraceState([("vendor", "v1")])
    for trace_id, span_id, flags, ts in ((1, 1, TraceFlags(0), TraceState()),
                                         (2**128 - 1, 2**64 - 1, TraceFlags(0x02), state)):
        ours = _valid_span_context(trace_id, span_id, flags, ts)
        theirs = SpanContext(trace_id, span_id, False, flags, ts)
        assert type(ours) is SpanContext and ours == theirs
        assert (ours.trace_id, ours.span_id, ours.is_remote, ours.trace_flags, ours.trace_state, ours.is_valid) \
            == (theirs.trace_id, theirs.span_id, theirs.is_remote, theirs.trace_flags, theirs.trace_state, True)
        assert repr(ours) == repr(theirs)


def _span(sampled: bool, remote: bool = False, trace_id: int = 0xABC) -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(trace_id, 0x1234, is_remote=remote,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0)))


def _under(span: object, ask: object) -> object:
    token = otel_context.attach(otel_context.set_value(trace.propagation._SPAN_KEY, span))
    try:
        return ask()  # type: ignore[operator]
    finally:
        otel_context.detach(token)


@pytest.mark.parametrize("roots", [True, False])
def test_remembered_answers_follow_the_current_span(roots: bool) -> None:
    """The lookups that remember their last span give, in any order of contexts, what the uncached
    API gives: ``trace.get_current_span()``, its sampled flag, and the gate's skip/start verdict."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    gate = SpanGate(provider, provider.get_tracer("gate"), roots=roots)
    sampled, unsampled, remote_unsampled = _span(True), _span(False), _span(False, remote=True)
    not_a_span = object()
    # Each context twice in a row (the remembered answer) and after every other one.
    order = [sampled, sampled, unsampled, unsampled, None, None, sampled, remote_unsampled, not_a_span,
             not_a_span, unsampled, sampled, None]
    for value in order:
        expected_span = trace.get_current_span() if value is None else (
            value if isinstance(value, trace.Span) else trace.INVALID_SPAN)
        assert _under(value, current_span) is expected_span
        expected_sampled = expected_span if expected_span.get_span_context().trace_flags.sampled else None
        assert _under(value, current_sampled_span) is expected_sampled
        ctx = expected_span.get_span_context()
        expected_skip = (not roots) if not ctx.is_valid else not ctx.trace_flags.sampled
        assert _under(value, gate.skip) is expected_skip, value
        started = _under(value, lambda: gate.start("db", {"db.system.name": "redis"}))
        if expected_skip:
            assert started is None
        elif ctx.is_valid:  # a sampled parent: a recording child in its trace
            assert started is not None and started.is_recording()
            assert started.get_span_context().trace_id == ctx.trace_id
            started.end()
        else:  # a root under a 0 % ratio: dropped by the ratio rule
            assert started is None


def test_a_class_registered_with_the_span_abc_later_is_still_checked() -> None:
    """The class cache only holds classes that were spans: a plain object stays the invalid span, and
    a class registered as a ``trace.Span`` afterwards is taken (``isinstance`` semantics)."""

    class Lookalike:
        def get_span_context(self) -> SpanContext:
            return _span(True).get_span_context()

    provider = TracerProvider()
    gate = SpanGate(provider, provider.get_tracer("gate"), roots=False)
    value = Lookalike()
    assert _under(value, current_span) is trace.INVALID_SPAN
    assert _under(value, current_sampled_span) is None
    assert _under(value, gate.skip) is True  # no valid parent, no root spans
    trace.Span.register(Lookalike)
    assert _under(value, current_span) is value
    assert _under(value, current_sampled_span) is value
    assert _under(value, gate.skip) is False  # now a sampled parent
