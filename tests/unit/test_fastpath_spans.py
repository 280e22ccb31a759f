"""set_span_attributes stores exactly what Span.set_attributes stores."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext

from sizewise_otel.fastpath.spans import set_span_attributes

FIRST = {"http.request.method": "GET", "url.scheme": "http", "server.port": 8080, "flag": True,
         "ratio": 0.25, "user_agent.original": "x" * 50, "url.path": "/a/ünï"}
SECOND = {"http.route": "/a/{id}", "http.response.status_code": 200, "url.scheme": "https"}


def _pair(limits: SpanLimits | None = None) -> tuple[Any, Any, TracerProvider]:
    provider = TracerProvider(span_limits=limits) if limits is not None else TracerProvider()
    tracer = provider.get_tracer("t")
    return tracer.start_span("ours", attributes={"seed": 1}), tracer.start_span("sdk", attributes={"seed": 1}), \
        provider


def _items(span: Any) -> list[tuple[str, Any]]:
    return list(span.attributes.items())


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attribute_length=8),
                                    SpanLimits(max_span_attributes=6), SpanLimits(max_span_attributes=0)])
def test_same_attributes_in_the_same_order_as_the_sdk(limits: SpanLimits | None) -> None:
    ours, sdk, provider = _pair(limits)
    for attrs in (FIRST, SECOND, {"odd": ["a", "b"], "http.route": "/b"}, {"bytes": b"raw"}):
        set_span_attributes(ours, attrs)
        sdk.set_attributes(attrs)
        assert _items(ours) == _items(sdk)
        assert ours._attributes.dropped == sdk._attributes.dropped
    if limits is not None and limits.max_span_attribute_length == 8:
        assert dict(_items(ours))["user_agent.original"] == "x" * 8  # truncated like the SDK
    if limits is None:  # a key set again moves to the end, as in the SDK's store
        assert [k for k, _ in _items(ours)][-3:] == ["odd", "http.route", "bytes"]
    ours.end()
    sdk.end()
    provider.shutdown()


def test_an_ended_span_is_left_alone_with_the_sdks_warning(caplog: pytest.LogCaptureFixture) -> None:
    ours, _sdk, provider = _pair()
    ours.end()
    with caplog.at_level(logging.WARNING):
        set_span_attributes(ours, FIRST)
    assert _items(ours) == [("seed", 1)]
    assert "ended span" in caplog.text
    provider.shutdown()


def test_invalid_keys_and_non_sdk_spans_take_the_public_api() -> None:
    ours, sdk, provider = _pair()
    for attrs in ({"": "empty key", "ok": 1}, {"ok": None}):
        set_span_attributes(ours, attrs)
        sdk.set_attributes(attrs)
        assert _items(ours) == _items(sdk)
    provider.shutdown()
    span = NonRecordingSpan(SpanContext(1, 2, False))
    set_span_attributes(span, FIRST)  # a no-op there, as set_attributes is
    assert not span.is_recording()
