"""The fast path's OTLP span encoder gives the library's message, and only sizewise's exporter uses it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as library_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from sizewise_otel.fastpath import otlp_spans
from tests import webhook

HTTP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _finished(build: Any, resource: Resource | None = None) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource({"service.name": "t"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider)
    return list(exporter.get_finished_spans())


def _server_spans(provider: TracerProvider, n: int = 300) -> None:
    tracer = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.66b2",
                                 schema_url="https://opentelemetry.io/schemas/1.11.0")
    for i in range(n):
        tracer.start_span("GET /ping", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "url.scheme": "http", "url.path": "/ping", "server.port": 8000,
            "client.port": 5555 + i % 16, "http.route": "/ping", "http.response.status_code": 200 + i % 2,
            "user_agent.original": f"agent-{i}"}).end()


def _every_shape(provider: TracerProvider) -> None:
    remote = SpanContext(2**128 - 1, 2**64 - 1, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1"), ("other", "o2")]))
    for tracer in (provider.get_tracer("scope.a", "1.2", schema_url="https://example.test/s", attributes={"a": 1}),
                   provider.get_tracer("scope.b")):
        links = [Link(SpanContext(5, 6, is_remote=True), {"why": "retry"}), Link(SpanContext(7, 8, is_remote=False))]
        with tracer.start_as_current_span("root", kind=SpanKind.CONSUMER, links=links,
                                          context=set_span_in_context(NonRecordingSpan(remote)), attributes={
                                              "text": "grüße", "empty": "", "yes": True, "no": False,
                                              "zero": 0, "negative": -(2**63), "max": 2**63 - 1, "half": 0.5,
                                              "nan_free": -0.0, "names": ("a", "b"), "numbers": (1, -2),
                                              "ratios": (0.25,), "flags": (True,), "none": ()}) as root:
            root.add_event("exception", {"exception.type": "ValueError", "exception.message": "x"}, timestamp=1)
            root.add_event("no attributes")
            root.set_status(Status(StatusCode.ERROR, "it failed"))
            with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
                child.set_status(Status(StatusCode.OK))
                tracer.start_span("grandchild", kind=SpanKind.PRODUCER).end()
        tracer.start_span("unset status, no parent").end()


def test_every_span_shape_encodes_to_the_librarys_message_and_bytes() -> None:
    spans = _finished(_every_shape) + _finished(_server_spans, Resource({"service.name": "u"}, "https://x.test/r"))
    ours, theirs = otlp_spans.encode_spans(spans), library_encode(spans)
    assert ours == theirs
    assert ours.SerializePartialToString() == theirs.SerializePartialToString()
    # Straight from the wire bytes too (not the library's fallback): two resources, two scopes in the first.
    direct = ExportTraceServiceRequest.FromString(otlp_spans._ENCODER.request(spans))
    assert direct == theirs
    assert [len(r.scope_spans) for r in direct.resource_spans] == [2, 1]
    assert sum(len(s.spans) for r in direct.resource_spans for s in r.scope_spans) == 8 + 300


def test_values_it_does_not_take_go_to_the_library() -> None:
    def odd(provider: TracerProvider) -> None:
        provider.get_tracer("t").start_span("s", attributes={"huge": 2**70, "fine": "x"}).end()

    spans = _finished(odd)
    with pytest.raises(otlp_spans.Unusual):
        otlp_spans._ENCODER.request(spans)
    assert otlp_spans.encode_spans(spans) == library_encode(spans)  # the library drops "huge" its own way


def test_the_attribute_cache_is_bounded() -> None:
    encoder = otlp_spans._Encoder()
    spans = _finished(lambda p: _server_spans(p, n=otlp_spans.MAX_CACHED_ATTRIBUTES + 50))
    assert ExportTraceServiceRequest.FromString(encoder.request(spans)) == library_encode(spans)
    assert len(encoder.attributes) == otlp_spans.MAX_CACHED_ATTRIBUTES


def test_the_probe_refuses_an_encoder_that_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A service's own sampler and limits do not thin the probe's spans (it reads nothing from the environment).
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    assert otlp_spans._probe()

    def without_flags(spans: Any) -> Any:
        message = library_encode(spans)
        message.resource_spans[0].scope_spans[0].spans[0].flags = 0
        return message

    monkeypatch.setattr(otlp_spans, "_library", lambda: without_flags)
    assert not otlp_spans._probe()


@pytest.fixture
def installed() -> Iterator[Any]:
    module = importlib.import_module(HTTP_MODULE)
    otlp_spans.uninstall()  # an earlier test's telemetry may have left it installed (no uninstrument())
    original = module.encode_spans
    assert otlp_spans.install() and module.encode_spans is not original
    try:
        yield module
    finally:
        otlp_spans.uninstall()
    assert module.encode_spans is original


def test_only_code_inside_encoding_uses_it(installed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    request = otlp_spans._ENCODER.request
    monkeypatch.setattr(otlp_spans._ENCODER, "request", lambda spans: calls.append(len(spans)) or request(spans))
    spans = _finished(lambda p: _server_spans(p, n=3))
    assert installed.encode_spans(spans) == library_encode(spans)
    assert calls == []  # another exporter in the process: the library's encoder
    with otlp_spans.encoding():
        assert installed.encode_spans(spans) == library_encode(spans)
    assert calls == [3]


def test_sizewise_exporter_posts_the_librarys_bytes(installed: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from sizewise_otel.telemetry import _CountingSpanExporter

    spans = _finished(_every_shape) + _finished(_server_spans)
    failures: list[str] = []
    with webhook.receiver() as (url, received):
        for lean in (True, False):
            exporter = _CountingSpanExporter(OTLPSpanExporter(endpoint=f"{url}/v1/traces"), failures.append, lean)
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            exporter.shutdown()
    assert failures == []
    assert [path for path, _, _ in received] == ["/v1/traces", "/v1/traces"]
    assert received[0][2] == received[1][2] == library_encode(spans).SerializePartialToString()
