"""OTel side of an error: the ``exception`` span event, and scrubbing of every span before export.

The tracker's ``exception`` event is a :class:`LazyExceptionEvent`: it is added on the request path
with nothing but a reference to the captured error, and its attributes (the scrubbed message, the
scrubbed stack trace, the group id) are computed the first time they are read, normally by the
exporter's thread, or taken from the writer thread's result when it got there first. It never holds
an unscrubbed value: the attributes do not exist until they are computed scrubbed.

Instrumentations record exceptions themselves (the ASGI middleware's ``record_exception`` puts the raw
message on the server span, and the status description too). :class:`ScrubbingSpanProcessor` runs in
the SDK's pre-export hook (``fastpath.spans.EndingSpanProcessor``), before any exporter sees the
span, and scrubs attribute values, event attributes and the status description. Duplicate exception
events (ours, then the instrumentation's for the same exception) are collapsed into ours. Where the
SDK has no such hook (before 1.36) or the fast path is off, :class:`EndScrubbingSpanProcessor` does
the same in ``on_end`` on the ended span, and the telemetry module's exporters scrub once more right
before export.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from sizewise_otel.errors.scrub import Scrubber
from sizewise_otel.fastpath.bounded import BoundedCache
from sizewise_otel.fastpath.detect import enabled
from sizewise_otel.fastpath.spans import (
    EndingSpanProcessor,
    LazyEvent,
    add_event,
    replace_events,
    replace_status,
    rewrite_attributes,
    span_attributes,
    span_events,
    span_status,
)
from sizewise_otel.instruments.registry import MARKS

ERROR_ID_ATTR = "sizewise.error.id"
GROUP_ID_ATTR = "sizewise.error.group_id"


class LazyExceptionEvent(LazyEvent):
    """An ``exception`` event whose attributes are computed (scrubbed) on first read, off the request path.

    ``resolve()`` returns the final, already scrubbed attributes; if it fails, the event carries only
    the type and the error id. ``error_type`` is known at once (the duplicate-event collapsing needs it).
    """

    def __init__(self, error_type: str, error_id: str, resolve: Callable[[], Mapping[str, Any]],
                 timestamp: int | None = None, *, max_value_len: int | None = None) -> None:
        super().__init__("exception", resolve,
                         lambda: {"exception.type": error_type, ERROR_ID_ATTR: error_id},
                         timestamp, max_value_len=max_value_len)
        self.error_type = error_type
        self.error_id = error_id


def record_lazy_on_span(span: Any, error_type: str, error_id: str,
                        resolve: Callable[[], Mapping[str, Any]], *, mark: bool = True) -> None:
    """The request-path half of :func:`record_on_current_span`, for a span known to be recording.

    Adds a :class:`LazyExceptionEvent`, and with ``mark`` sets status ERROR and ``error.type`` (an
    exception escaping a request: the HTTP server layer, ours or the contrib's, sets both on its span
    as the exception passes, so ``mark=False`` spares two span-lock round trips). Nothing is
    formatted or scrubbed here; ``error_type`` is a class name (no data).
    """
    if not add_event(span, lambda limit: LazyExceptionEvent(error_type, error_id, resolve,
                                                             max_value_len=limit)):
        # not an SDK span: compute now
        span.add_event("exception", dict(resolve()))
    if not mark:
        return
    status = _error_status.get(error_type)
    if status is None:
        status = _error_status.put(error_type, Status(StatusCode.ERROR, error_type))
    span.set_status(status)
    span.set_attribute("error.type", error_type)


def mark_server_error_status(span: Any, status: int) -> None:
    """A 5xx answered without an exception: status ERROR and ``error.type`` = the status code, no
    event (the HTTP semconv: an exception event only for an exception). No status description:
    the status code says it all."""
    span.set_status(_STATUS_ERROR)
    span.set_attribute("error.type", str(int(status)))


_STATUS_ERROR = Status(StatusCode.ERROR)
_error_status: BoundedCache[str, Status] = BoundedCache(1024)  # immutable: one Status per error type


def record_on_current_span(*, error_type: str, message: str, stacktrace: str, error_id: str,
                           group_id: str) -> tuple[str | None, str | None]:
    """Add the semconv ``exception`` event and ERROR status; return (trace_id, span_id) as hex.

    No ``exception.escaped``: semconv deprecated it (an exception recorded on a span that ends
    because of it has escaped; nothing to say twice)."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None, None
    if span.is_recording():
        span.add_event("exception", {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
            ERROR_ID_ATTR: error_id,
            GROUP_ID_ATTR: group_id,
        })
        span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attribute("error.type", error_type)
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def scrub_span(s: Scrubber, span: Any) -> None:
    """Scrub a span's attribute values, event attributes and status description, in place."""
    attrs = span_attributes(span)
    kind = getattr(span, "kind", None)
    if attrs:
        changes = s.attribute_changes(attrs, kind=kind)
        if changes:
            rewrite_attributes(span, attrs, changes)
    events = span_events(span)
    if events:
        # Our events: lazy ones are scrubbed by construction and must stay lazy (reading their
        # attributes here would do the deferred work on the request path).
        ours_types = {_short_type(e.error_type) for e in events if isinstance(e, LazyExceptionEvent)}
        ours_types |= {_short_type(e.attributes.get("exception.type")) for e in events
                       if not isinstance(e, LazyExceptionEvent) and e.attributes
                       and ERROR_ID_ATTR in e.attributes}
        rewritten = []
        changed = False
        for ev in events:
            if isinstance(ev, LazyExceptionEvent):
                rewritten.append(ev)
                continue
            ev_attrs = dict(ev.attributes or {})
            new_attrs = s.attributes(ev_attrs, kind=kind) if ev_attrs else None
            final = new_attrs if new_attrs is not None else ev_attrs
            if ev.name == "exception" and ERROR_ID_ATTR not in final and ours_types and \
                    _short_type(final.get("exception.type")) in ours_types:
                changed = True  # the instrumentation's copy of an exception we already recorded
                continue
            if new_attrs is not None:
                changed = True
                rewritten.append(Event(ev.name, new_attrs, ev.timestamp))
            else:
                rewritten.append(ev)
        if changed:
            replace_events(span, events, rewritten)
    status = span_status(span)
    if status is not None and status.description:
        clean = s.text(status.description)
        if clean != status.description:
            replace_status(span, Status(status.status_code, clean))


class ScrubbingSpanProcessor(EndingSpanProcessor):
    """Fast path: scrubs in the SDK's pre-export hook, while the span is still ending."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    def on_ending(self, span: Any) -> None:
        self.scrub(span)

    def scrub(self, span: Any) -> None:
        with contextlib.suppress(Exception):  # never break span delivery
            scrub_span(self.scrubber, span)


class EndScrubbingSpanProcessor(SpanProcessor):
    """Public path (no pre-export hook): scrubs the ended span in ``on_end``.

    The SDK hands every processor the same ended span, so processors added after this one
    (exporters of a service, tests) get it scrubbed; for the exporters added before it the
    telemetry module wraps them to call :meth:`scrub` again right before export.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: Any) -> None:
        self.scrub(span)

    def scrub(self, span: Any) -> None:
        with contextlib.suppress(Exception):  # never break span delivery
            scrub_span(self.scrubber, span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _short_type(value: Any) -> str:
    return str(value or "").rsplit(".", 1)[-1]


def install_span_scrubber(tracer_provider: Any,
                          scrubber: Scrubber) -> ScrubbingSpanProcessor | EndScrubbingSpanProcessor | None:
    """Add the scrubbing processor to an SDK tracer provider, once (the hook's one on the fast path)."""
    existing = MARKS.get(tracer_provider, "span.scrubber")
    if existing is not None:
        existing.scrubber = scrubber
        return existing
    if not hasattr(tracer_provider, "add_span_processor"):
        return None
    processor = ScrubbingSpanProcessor(scrubber) if enabled() else EndScrubbingSpanProcessor(scrubber)
    # The SDK cannot remove a span processor: it stays for the provider's life (uninstrument keeps it).
    tracer_provider.add_span_processor(processor)
    MARKS.claim(tracer_provider, "span.scrubber", processor)
    return processor
