"""OTel side of an error: the ``exception`` span event, and scrubbing of every span before export.

Instrumentations record exceptions themselves (the ASGI middleware's ``record_exception`` puts the raw
message on the server span, and the status description too). :class:`ScrubbingSpanProcessor` runs in
the SDK's ``_on_ending`` hook, before any exporter sees the span, and scrubs attribute values, event
attributes and the status description. Duplicate exception events (ours, then the instrumentation's
for the same exception) are collapsed into ours.
"""

from __future__ import annotations

import contextlib
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from sizewise_otel.errors.scrub import Scrubber

ERROR_ID_ATTR = "sizewise.error.id"
GROUP_ID_ATTR = "sizewise.error.group_id"


def record_on_current_span(*, error_type: str, message: str, stacktrace: str, error_id: str,
                           group_id: str, escaped: bool) -> tuple[str | None, str | None]:
    """Add the semconv ``exception`` event and ERROR status; return (trace_id, span_id) as hex."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None, None
    if span.is_recording():
        span.add_event("exception", {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
            "exception.escaped": escaped,
            ERROR_ID_ATTR: error_id,
            GROUP_ID_ATTR: group_id,
        })
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class ScrubbingSpanProcessor(SpanProcessor):
    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        with contextlib.suppress(Exception):  # never break span delivery
            self._scrub(span)

    def _scrub(self, span: Any) -> None:
        s = self.scrubber
        attrs = getattr(span, "_attributes", None)
        if attrs:
            new = s.attributes(dict(attrs))
            if new is not None:
                span._attributes = BoundedAttributes(
                    maxlen=getattr(attrs, "maxlen", None), attributes=new, immutable=True,
                    max_value_len=getattr(attrs, "max_value_len", None))
        events = getattr(span, "_events", None)
        if events:
            ours = {(e.attributes.get("exception.type"), e.attributes.get("exception.message"))
                    for e in events if e.attributes and ERROR_ID_ATTR in e.attributes}
            ours_types = {t for t, _ in ours}
            rewritten = []
            changed = False
            for ev in events:
                ev_attrs = dict(ev.attributes or {})
                new_attrs = s.attributes(ev_attrs) if ev_attrs else None
                final = new_attrs if new_attrs is not None else ev_attrs
                if ev.name == "exception" and ERROR_ID_ATTR not in final and ours and \
                        _short_type(final.get("exception.type")) in {_short_type(t) for t in ours_types}:
                    changed = True  # the instrumentation's copy of an exception we already recorded
                    continue
                if new_attrs is not None:
                    changed = True
                    rewritten.append(Event(ev.name, new_attrs, ev.timestamp))
                else:
                    rewritten.append(ev)
            if changed:
                dq = events._dq
                dq.clear()
                dq.extend(rewritten)
        status = getattr(span, "_status", None)
        if status is not None and status.description:
            clean = s.text(status.description)
            if clean != status.description:
                span._status = Status(status.status_code, clean)

    def on_end(self, span: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _short_type(value: Any) -> str:
    return str(value or "").rsplit(".", 1)[-1]


def install_span_scrubber(tracer_provider: Any, scrubber: Scrubber) -> ScrubbingSpanProcessor | None:
    """Add the scrubbing processor to an SDK tracer provider, once."""
    existing = getattr(tracer_provider, "_sizewise_scrubber", None)
    if existing is not None:
        existing.scrubber = scrubber
        return existing
    if not hasattr(tracer_provider, "add_span_processor"):
        return None
    processor = ScrubbingSpanProcessor(scrubber)
    tracer_provider.add_span_processor(processor)
    tracer_provider._sizewise_scrubber = processor
    return processor
