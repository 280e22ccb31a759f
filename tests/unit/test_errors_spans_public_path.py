"""Span scrubbing on the public path (SDK without the pre-export hook, or SIZEWISE_FASTPATH=0).

The scrubber then runs in ``on_end``; an exporter whose processor was added *before* it (the
telemetry module's own ``BatchSpanProcessor``s) is wrapped to scrub again right before export, so
no ordering or thread race sends an unscrubbed value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from sizewise_otel.errors.scrub import Scrubber
from sizewise_otel.errors.spans import EndScrubbingSpanProcessor, ScrubbingSpanProcessor, install_span_scrubber
from sizewise_otel.fastpath import detect
from sizewise_otel.telemetry import _ScrubbingSpanExporter

CLIENT_IP = "203.0.113.9"


@pytest.fixture
def public_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    detect.reset_for_tests()
    monkeypatch.setenv(detect.ENV, "0")
    yield
    monkeypatch.undo()
    detect.reset_for_tests()


def _span(p: TracerProvider) -> None:
    with p.get_tracer("t").start_as_current_span("GET /x", kind=SpanKind.SERVER) as span:
        span.set_attribute("client.address", CLIENT_IP)
        span.add_event("note", {"from": f"seen from {CLIENT_IP}"})


def _exported(exporter: InMemorySpanExporter) -> list[Any]:
    return [(dict(s.attributes), [dict(e.attributes) for e in s.events]) for s in exporter.get_finished_spans()]


class Snapshot(SpanExporter):
    """What was sent at export time (an in-memory exporter keeps the span object, which changes later)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.sent += [(dict(s.attributes), [dict(e.attributes) for e in s.events]) for s in spans]
        return SpanExportResult.SUCCESS


def test_public_path_scrubs_in_on_end_for_processors_added_after(public_path: None) -> None:
    p = TracerProvider(sampler=ALWAYS_ON)
    processor = install_span_scrubber(p, Scrubber())
    assert type(processor) is EndScrubbingSpanProcessor and not hasattr(processor, "on_ending")
    exporter = InMemorySpanExporter()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    _span(p)
    assert _exported(exporter) == [({"client.address": "[ip]"}, [{"from": "seen from [ip]"}])]


def test_exporters_added_before_the_scrubber_are_wrapped(public_path: None) -> None:
    p = TracerProvider(sampler=ALWAYS_ON)
    bare, wrapped = Snapshot(), Snapshot()
    # Both are added before the scrubber exists (as Telemetry adds its exporters): the bare one is
    # the control that shows the order matters, the wrapped one is what Telemetry does.
    p.add_span_processor(SimpleSpanProcessor(bare))
    p.add_span_processor(SimpleSpanProcessor(_ScrubbingSpanExporter(wrapped, p)))
    install_span_scrubber(p, Scrubber())
    _span(p)
    assert bare.sent[0][0] == {"client.address": CLIENT_IP}  # exported before on_end scrubbed
    assert wrapped.sent == [({"client.address": "[ip]"}, [{"from": "seen from [ip]"}])]


def test_fast_path_scrubber_is_the_hook_one_where_the_sdk_calls_it() -> None:
    p = TracerProvider(sampler=ALWAYS_ON)
    processor = install_span_scrubber(p, Scrubber())
    assert isinstance(processor, ScrubbingSpanProcessor) == detect.enabled()
