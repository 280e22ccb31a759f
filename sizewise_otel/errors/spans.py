"""OTel side of an error: the ``exception`` span event, and scrubbing of every span before export.

The tracker's ``exception`` event is a :class:`LazyExceptionEvent`: it is added on the request path
with nothing but a reference to the captured error, and its attributes (the scrubbed message, the
scrubbed stack trace, the group id) are computed the first time they are read, normally by the
exporter's thread, or taken from the writer thread's result when it got there first. It never holds
an unscrubbed value: the attributes do not exist until they are computed scrubbed.

Instrumentations record exceptions themselves (the ASGI middleware's ``record_exception`` puts the raw
message on the server span, and the status description too). :class:`ScrubbingSpanProcessor` runs in
the SDK's ``_on_ending`` hook, before any exporter sees the span, and scrubs attribute values, event
attributes and the status description. Duplicate exception events (ours, then the instrumentation's
for the same exception) are collapsed into ours.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from sizewise_otel.errors.scrub import Scrubber

ERROR_ID_ATTR = "sizewise.error.id"
GROUP_ID_ATTR = "sizewise.error.group_id"


class LazyExceptionEvent(Event):
    """An ``exception`` event whose attributes are computed (scrubbed) on first read, off the request path.

    ``resolve()`` returns the final, already scrubbed attributes; if it fails, the event carries only
    the type and the error id. ``error_type`` is known at once (the duplicate-event collapsing needs it).
    """

    _lock = threading.Lock()

    def __init__(self, error_type: str, error_id: str, resolve: Callable[[], Mapping[str, Any]],
                 timestamp: int | None = None, *, max_value_len: int | None = None) -> None:
        super().__init__("exception", None, timestamp)
        self.max_value_len = max_value_len
        self.error_type = error_type
        self.error_id = error_id
        self._resolve: Callable[[], Mapping[str, Any]] | None = resolve

    @property
    def attributes(self) -> Any:
        if self._resolve is not None:
            with self._lock:
                resolve = self._resolve
                if resolve is not None:
                    try:
                        attrs: Mapping[str, Any] = resolve()
                    except Exception:
                        attrs = {"exception.type": self.error_type, ERROR_ID_ATTR: self.error_id}
                    self._attributes = BoundedAttributes(attributes=attrs, immutable=True,
                                                         max_value_len=self.max_value_len)
                    self._resolve = None  # drop the reference to the captured error
        return self._attributes

    @property
    def dropped_attributes(self) -> int:
        attrs = self.attributes
        return attrs.dropped if isinstance(attrs, BoundedAttributes) else 0


def record_lazy_on_span(span: Any, error_type: str, error_id: str,
                        resolve: Callable[[], Mapping[str, Any]]) -> None:
    """The request-path half of :func:`record_on_current_span`, for a span known to be recording.

    Adds a :class:`LazyExceptionEvent`, sets status ERROR and ``error.type``. Nothing is formatted or
    scrubbed here; ``error_type`` is a class name (no data).
    """
    add = getattr(span, "_add_event", None)
    if add is not None:
        limits = getattr(span, "_limits", None)
        add(LazyExceptionEvent(error_type, error_id, resolve,
                               max_value_len=getattr(limits, "max_attribute_length", None)))
    else:  # not an SDK span: compute now
        span.add_event("exception", dict(resolve()))
    status = _error_status.get(error_type)
    if status is None:
        status = Status(StatusCode.ERROR, error_type)
        if len(_error_status) < 1024:
            _error_status[error_type] = status
    span.set_status(status)
    span.set_attribute("error.type", error_type)


_error_status: dict[str, Status] = {}  # Status objects are immutable: one per error type


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
        kind = getattr(span, "kind", None)
        if attrs:
            changes = s.attribute_changes(attrs, kind=kind)
            if changes:
                _apply_changes(span, attrs, changes)
        events = getattr(span, "_events", None)
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


def _apply_changes(span: Any, attrs: Any, changes: dict[str, Any]) -> None:
    """Put the scrubbed values into the span's attributes.

    The span's ``BoundedAttributes`` are rewritten in place, key by key (the values are already
    valid attribute values: strings or tuples of strings, truncated here to the span's limit), so
    the other attributes are not cleaned and copied again; anything else gets a new mapping.
    """
    store = getattr(attrs, "_dict", None)
    lock = getattr(attrs, "_lock", None)
    if isinstance(attrs, BoundedAttributes) and isinstance(store, dict) and lock is not None:
        limit = attrs.max_value_len
        with lock:
            for key, value in changes.items():
                if limit is not None:
                    value = value[:limit] if isinstance(value, str) else tuple(v[:limit] for v in value)
                store[key] = value
        return
    span._attributes = BoundedAttributes(
        maxlen=getattr(attrs, "maxlen", None), attributes={**attrs, **changes}, immutable=True,
        max_value_len=getattr(attrs, "max_value_len", None))


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
