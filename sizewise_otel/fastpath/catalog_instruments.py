"""Catalog counters and histograms that record like the SDK's, for a fraction of the cost.

``Telemetry.instrument(name)`` hands these to the service (the HVAC business signals, errors, alert
notifications). An SDK ``Counter.add`` or ``Histogram.record`` validates, copies, filters and hashes
its attribute dict on every call (9-11 us with two attributes on the 2-core reference machine,
``python bench/figures.py lean``), which a request that records two business signals pays twice.
Here the attribute dict is looked up by its items; a new attribute set is cleaned and filtered once
(as the SDK and the catalog's views would: ``BoundedAttributes`` cleaning, the histogram's attribute
allow-list); a measurement is one addition on a :class:`~sizewise_otel.fastpath.lean_sum.LeanSum` or
:class:`~sizewise_otel.fastpath.histogram.LeanHistogram` point.

A negative amount is dropped with a warning, as the SDK drops it; so are NaN and infinity, which
would turn the exported sum into NaN or infinity for good. A non-numeric amount raises ``TypeError``,
as the SDK's comparison does. While the lean aggregation is exported the SDK instrument never
records, so a name is never exported as two streams. When the provider's exemplar filter is not the
SDK's trace-based or always-off one, the SDK instrument is handed out instead. Once the reader hook
is removed (the last ``handle.uninstrument()``) the lean aggregation is no longer exported and every
later measurement goes to the SDK instrument, which its readers export as before: nothing SizeWise
patched is left, and nothing recorded after that is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes

from sizewise_otel.fastpath.exemplars import OFF, TRACE_BASED
from sizewise_otel.fastpath.histogram import lean_histogram
from sizewise_otel.fastpath.lean_sum import lean_sum
from sizewise_otel.fastpath.spangate import current_sampled_span, current_span

log = logging.getLogger("sizewise.fastpath")
_BOUND_KEYS = 4096  # attribute dicts remembered per instrument; past that each call re-resolves (bounded)


class _LeanInstrument:
    """What both kinds share: the SDK instrument's identity, the bound attribute sets."""

    def __init__(self, sdk: Any, lean: Any, allowed: frozenset[str] | None) -> None:
        self._sdk, self._lean = sdk, lean
        self._allowed = allowed
        self._bound: dict[tuple[Any, ...], Any] = {}
        self.name, self.unit, self.description = lean.name, lean.unit, lean.description

    def _point(self, attributes: dict[str, Any] | None) -> Any:
        """The lean point for ``attributes`` (cleaned and filtered once per new attribute set)."""
        lean = self._lean
        try:
            key: tuple[Any, ...] | None = tuple(attributes.items()) if attributes else ()
            found = self._bound.get(key)  # type: ignore[arg-type]
        except TypeError:  # an unhashable value (a list): cleaning makes it a tuple
            key = found = None
        if found is not None:
            return found
        cleaned = dict(BoundedAttributes(attributes=attributes or {}, immutable=False, max_value_len=None))
        if self._allowed is not None:
            cleaned = {k: v for k, v in cleaned.items() if k in self._allowed}
        point = lean.point((self.name, *sorted(cleaned.items())), cleaned)
        if key is not None and len(self._bound) < _BOUND_KEYS:
            self._bound[key] = point
        return point

    def _kept(self, amount: float) -> bool:
        """False (with the SDK's warning) for what the SDK drops; ``TypeError`` for a non-number."""
        if amount >= 0 and amount != float("inf"):
            return True
        log.warning("%s amount must be a finite non-negative number on %s; dropped", type(self).__name__,
                    self.name)
        return False


def _span_of(context: Any) -> Any:
    """The current span, or ``context``'s when one is given (what the SDK's exemplar filter reads)."""
    return current_span() if context is None else trace.get_current_span(context)


def _sampled_context(context: Any) -> Any:
    """The span context of the current (or ``context``'s) span when sampled, else ``None``."""
    if context is None:
        span = current_sampled_span()
        return span.get_span_context() if span is not None else None
    ctx = trace.get_current_span(context).get_span_context()
    return ctx if ctx.trace_flags.sampled else None


class LeanCounter(_LeanInstrument):
    """``Counter.add`` of a catalog counter on a :class:`LeanSum`."""

    def add(self, amount: float, attributes: dict[str, Any] | None = None, context: Any = None) -> None:
        if self._lean.detached:
            self._sdk.add(amount, attributes, context)
            return
        if not self._kept(amount):
            return
        point = self._point(attributes)
        lean = self._lean
        if lean.policy.mode == TRACE_BASED and (ctx := _sampled_context(context)) is not None:
            lean.add_with_exemplar(point, amount, ctx.span_id, ctx.trace_id, attributes)
        else:
            lean.add(point, amount)


class LeanHistogramInstrument(_LeanInstrument):
    """``Histogram.record`` of a catalog histogram on a :class:`LeanHistogram` (its buckets and
    attribute allow-list are the catalog view's)."""

    def record(self, amount: float, attributes: dict[str, Any] | None = None, context: Any = None) -> None:
        if self._lean.detached:
            self._sdk.record(amount, attributes, context)
            return
        if not self._kept(amount):
            return
        point = self._point(attributes)
        if context is None and self._lean.exemplar_mode == TRACE_BASED:  # the default filter
            span = current_sampled_span()  # only a sampled span's measurement can be an exemplar
            if span is None:
                self._lean.record(point, amount)
                return
        else:
            span = _span_of(context)
        self._lean.offer(point, amount, span, attributes)


def lean_counter(provider: Any, sdk: Any, name: str, unit: str, description: str,
                 scope_identity: tuple[str, str, str | None]) -> Any:
    """A :class:`LeanCounter` for the SDK counter ``sdk``, or ``sdk`` itself when no lean sum fits."""
    lean = lean_sum(provider, name, unit, description, scope_identity)
    if lean is None or lean.policy.mode not in (OFF, TRACE_BASED):
        return sdk
    return LeanCounter(sdk, lean, None)


def lean_histogram_instrument(provider: Any, sdk: Any, name: str, unit: str, description: str,
                              bounds: Iterable[float], allowed: Iterable[str],
                              scope_identity: tuple[str, str, str | None]) -> Any:
    """A :class:`LeanHistogramInstrument` for ``sdk``, or ``sdk`` itself when no lean histogram fits."""
    lean = lean_histogram(provider, name, unit, description, bounds, scope_identity)
    if lean is None or lean.exemplar_mode not in (OFF, TRACE_BASED):
        return sdk
    return LeanHistogramInstrument(sdk, lean, frozenset(allowed))
