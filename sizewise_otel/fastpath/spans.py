"""SDK span internals the error tracker needs: a lazily computed event and the pre-export hook.

- :class:`LazyEvent`: an SDK ``Event`` whose attributes are computed on first read (normally by
  the exporter's thread), added to a recording span without the SDK re-validating them.
- :class:`EndingSpanProcessor`: a ``SpanProcessor`` whose :meth:`~EndingSpanProcessor.on_ending`
  runs in the SDK's ``_on_ending`` hook, while the span can still be changed and before any
  exporter sees it; the accessors below read and rewrite what such a hook may change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanProcessor
from opentelemetry.trace import Status


class LazyEvent(Event):
    """An event whose attributes come from ``resolve()`` on first read (``fallback()`` if it fails)."""

    _lock = threading.Lock()

    def __init__(self, name: str, resolve: Callable[[], Mapping[str, Any]],
                 fallback: Callable[[], Mapping[str, Any]], timestamp: int | None = None, *,
                 max_value_len: int | None = None) -> None:
        super().__init__(name, None, timestamp)
        self.max_value_len = max_value_len
        self._resolve: Callable[[], Mapping[str, Any]] | None = resolve
        self._fallback = fallback

    @property
    def pending(self) -> bool:
        return self._resolve is not None

    @property
    def attributes(self) -> Any:
        if self._resolve is not None:
            with self._lock:
                resolve = self._resolve
                if resolve is not None:
                    try:
                        attrs: Mapping[str, Any] = resolve()
                    except Exception:
                        attrs = self._fallback()
                    self._attributes = BoundedAttributes(attributes=attrs, immutable=True,
                                                         max_value_len=self.max_value_len)
                    self._resolve = None  # drop the reference to whatever resolve() closed over
        return self._attributes

    @property
    def dropped_attributes(self) -> int:
        attrs = self.attributes
        return attrs.dropped if isinstance(attrs, BoundedAttributes) else 0


def add_event(span: Any, make: Callable[[int | None], Event]) -> bool:
    """Add ``make(max_attribute_length)`` to an SDK span as is; ``False`` if ``span`` is not one."""
    add = getattr(span, "_add_event", None)
    if add is None:
        return False
    limits = getattr(span, "_limits", None)
    add(make(getattr(limits, "max_attribute_length", None)))
    return True


class EndingSpanProcessor(SpanProcessor):
    """A processor whose :meth:`on_ending` sees each span just before it ends (override it)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:  # the SDK's hook (1.36+)
        self.on_ending(span)

    def on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_attributes(span: Any) -> Any:
    return getattr(span, "_attributes", None)


def span_events(span: Any) -> Any:
    return getattr(span, "_events", None)


def replace_events(span: Any, events: Any, rewritten: list[Any]) -> None:
    """Put ``rewritten`` in place of a span's events (the bounded deque keeps its limit)."""
    dq = getattr(events, "_dq", None)
    if dq is None:  # an ended span's events may be a plain tuple
        span._events = tuple(rewritten)
        return
    dq.clear()
    dq.extend(rewritten)


def span_status(span: Any) -> Status | None:
    return getattr(span, "_status", None)


def replace_status(span: Any, status: Status) -> None:
    """Set an ending span's status as is (``set_status`` refuses once the span is ending)."""
    span._status = status


def rewrite_attributes(span: Any, attrs: Any, changes: dict[str, Any]) -> None:
    """Put already-valid values into an ending span's attributes.

    The span's ``BoundedAttributes`` are rewritten in place, key by key (strings or tuples of
    strings, truncated to the span's limit), so the other attributes are not cleaned and copied
    again; anything else gets a new mapping.
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


_PLAIN_VALUES = (int, float, bool)  # returned as they are by the SDK's attribute cleaning


def set_span_attributes(span: Any, attributes: Mapping[str, Any]) -> None:
    """``span.set_attributes(attributes)`` for a recording SDK span, without re-cleaning plain values.

    The SDK cleans every value again (an isinstance ladder per value, then a copy of the mapping)
    before storing it. Values that are ``str`` (truncated to the span's limit, as the SDK does),
    ``int``, ``float`` or ``bool`` under non-empty ``str`` keys come out of that cleaning unchanged,
    so they are stored as the SDK's own store does it (a key already there moves to the end), under
    the span's and the attributes' locks. Anything else (another value type, an ended span, a
    store that would hit its attribute count limit, a non-SDK span) goes to ``set_attributes``.
    """
    store = getattr(span, "_attributes", None)
    inner = getattr(store, "_dict", None)
    span_lock = getattr(span, "_lock", None)
    if type(store) is not BoundedAttributes or inner is None or span_lock is None or store._immutable:
        span.set_attributes(attributes)
        return
    maxlen, limit = store.maxlen, store.max_value_len
    if maxlen is not None and len(inner) + len(attributes) > maxlen:
        span.set_attributes(attributes)  # eviction and drop counting stay the SDK's
        return
    clean: Mapping[str, Any] = attributes
    truncated: dict[str, Any] | None = None  # a copy, made only if a value has to be truncated
    for key, value in attributes.items():
        if key.__class__ is not str or not key:
            span.set_attributes(attributes)
            return
        if value.__class__ is str:
            if limit is not None and len(value) > limit:
                if truncated is None:
                    clean = truncated = dict(attributes)
                truncated[key] = value[:limit]
        elif value.__class__ not in _PLAIN_VALUES:
            span.set_attributes(attributes)
            return
    with span_lock:
        if getattr(span, "_end_time", None) is not None:
            ended = True
        else:
            ended = False
            with store._lock:
                if inner and not inner.keys().isdisjoint(clean):
                    for key in clean:
                        inner.pop(key, None)  # a key set again moves to the end, as in the SDK's store
                inner.update(clean)
    if ended:
        span.set_attributes(attributes)  # the SDK's own warning for an ended span
