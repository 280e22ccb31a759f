"""Spans a gate decided sampled are built directly: field for field what ``Tracer.start_span`` builds."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from sizewise_otel.fastpath import enabled, sampled_span
from sizewise_otel.fastpath.sampled_span import SampledSpans, _comparable
from sizewise_otel.fastpath.spangate import ServerSpanGate, SpanGate, detach, enter_span

ATTRS = {"db.system.name": "postgresql", "server.port": 5432, "db.ratio": 0.5, "db.flag": True}


def _provider(sampler: object) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_the_installed_sdk_passes_the_probe() -> None:
    # Whether or not the fast path is on here (the matrix's older cells have it off), the SDK's span matches.
    assert sampled_span._sdk_matches()


def test_sampled_server_roots_and_children_equal_the_sdks_own() -> None:
    provider, exporter = _provider(ParentBased(TraceIdRatioBased(1.0)))
    tracer = provider.get_tracer("gate")
    gate = ServerSpanGate(provider, tracer)
    assert (gate._sampled is not None) == enabled()  # built directly on the fast path, else by start_span
    state = TraceState([("vendor", "abc")])
    contexts = [None] + [trace.set_span_in_context(NonRecordingSpan(
        SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)))
        for flags in (0x01, 0x03)]
    for seed, context in enumerate(contexts):
        random.seed(seed)  # the random id generator's draws: the same on both sides
        ours = gate.start("GET", context, ATTRS)
        random.seed(seed)
        theirs = tracer.start_span("GET", context=context, kind=SpanKind.SERVER, attributes=ATTRS)
        assert ours.is_recording() and type(ours) is type(theirs)
        assert _comparable(ours) == _comparable(theirs)  # ids, flags, trace state, parent, attributes, scope
        ours.end()
        theirs.end()
    finished = exporter.get_finished_spans()
    assert len(finished) == 6  # through the provider's processors, as the SDK's are
    assert all(s.context.trace_flags.sampled for s in finished)  # (the random flag as the SDK sets it: above)
    assert finished[2].context.trace_state == state and finished[2].parent.span_id == 0x5678


def test_client_children_of_a_sampled_parent_and_sampled_roots_are_the_sdks() -> None:
    provider, _ = _provider(ParentBased(TraceIdRatioBased(1.0)))
    tracer = provider.get_tracer("client")
    gate = SpanGate(provider, tracer)
    assert (gate._sampled is not None) == enabled()
    random.seed(3)
    root = gate.start("SELECT", ATTRS)
    random.seed(3)
    reference = tracer.start_span("SELECT", kind=SpanKind.CLIENT, attributes=ATTRS)
    assert _comparable(root) == _comparable(reference)
    parent = tracer.start_span("GET", kind=SpanKind.SERVER)
    _, token = enter_span(parent)
    try:
        random.seed(4)
        child = gate.start("SELECT", ATTRS)
        random.seed(4)
        reference = tracer.start_span("SELECT", kind=SpanKind.CLIENT, attributes=ATTRS)
    finally:
        detach(token)
    assert child.parent == parent.get_span_context() and _comparable(child) == _comparable(reference)


def test_a_sampler_that_drops_sampled_parents_children_is_asked() -> None:
    # Not ParentBased's default: a remote sampled parent's children are dropped, so nothing is built directly.
    sampler = ParentBased(TraceIdRatioBased(1.0), remote_parent_sampled=ALWAYS_OFF)
    provider, _ = _provider(sampler)
    gate = ServerSpanGate(provider, provider.get_tracer("gate"))
    assert (gate.keep_local, gate.keep_remote) == (True, False)
    parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0x01))
    span = gate.start("GET", trace.set_span_in_context(NonRecordingSpan(parent)))
    assert not span.is_recording()


def test_an_sdk_that_builds_otherwise_keeps_start_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from sizewise_otel.fastpath.detect import probed_once

    monkeypatch.setattr(sampled_span, "_sdk_matches", probed_once(sampled_span._probe))  # probed afresh

    class Differs(sampled_span._span_class()):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._extra = True  # a field start_span's span does not have

    monkeypatch.setattr(sampled_span, "_span_class", lambda: Differs)
    assert not sampled_span._sdk_matches()
    provider, exporter = _provider(ParentBased(ALWAYS_ON))
    tracer = provider.get_tracer("gate")
    assert not SampledSpans(tracer).usable
    gate = ServerSpanGate(provider, tracer)
    assert gate._sampled is None
    span = gate.start("GET", None)
    assert span.is_recording() and type(span) is not Differs
    span.end()
    assert len(exporter.get_finished_spans()) == 1
