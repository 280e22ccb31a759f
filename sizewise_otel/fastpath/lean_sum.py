"""The lean monotonic sum: a catalog counter aggregated without the SDK's per-call work.

The counter's twin of :class:`~sizewise_otel.fastpath.histogram.LeanHistogram`: an attribute set is
resolved once (:meth:`LeanSum.point`), an ``add`` is one addition under a lock, and each reader of
the SDK ``MeterProvider`` gets a standard cumulative monotonic ``Sum`` metric merged into what the
SDK collected, through the same reader hook (so :func:`detach_lean_histograms` removes it too).

Exemplars follow the provider's filter as the SDK's default counter reservoir does with one slot:
a measurement made under a sampled span may become the data point's exemplar; here the latest one
since the reader's previous collection is kept (the SDK's ``SimpleFixedSizeExemplarReservoir``
keeps a random one of them). One slot per attribute set: memory is bounded by the cardinality limit.
"""

from __future__ import annotations

import threading
from time import time_ns
from typing import Any

from sizewise_otel.fastpath.exemplars import ExemplarPolicy
from sizewise_otel.fastpath.histogram import (
    _exemplars,
    bounded_point,
    lean_metric,
    merge_metric,
    readers_cumulative_for,
)


class LeanSumPoint:
    """One attribute set's cumulative total and its latest exemplar (``None`` until one is offered)."""

    __slots__ = ("attributes", "exemplar", "value")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.value: float = 0
        self.exemplar: tuple[Any, ...] | None = None


class LeanSum:
    """A cumulative monotonic sum exported by the SDK's readers, like an SDK ``Counter``'s."""

    def __init__(self, name: str, unit: str, description: str, scope: Any, resource: Any,
                 cardinality_limit: int = 2000, exemplar_filter: Any = None) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.scope, self.resource = scope, resource
        self.cardinality_limit = cardinality_limit
        self.start_time = time_ns()
        self._points: dict[Any, LeanSumPoint] = {}
        self.lock = threading.Lock()
        self.policy = ExemplarPolicy.of(exemplar_filter)
        self._seq = 0
        self._cursors: dict[int, int] = {}
        self.detached = False  # set when its reader hook is removed: no reader exports it any more

    def point(self, key: Any, attributes: dict[str, Any]) -> LeanSumPoint:
        found = self._points.get(key)
        if found is None:
            found = bounded_point(self._points, self.lock, self.cardinality_limit, key, attributes, LeanSumPoint)
        return found

    def add(self, point: LeanSumPoint, value: float) -> None:
        with self.lock:
            point.value += value

    def add_with_exemplar(self, point: LeanSumPoint, value: float, span_id: int, trace_id: int,
                          attributes: dict[str, Any] | None) -> None:
        now = time_ns()
        with self.lock:
            point.value += value
            self._seq += 1
            point.exemplar = (self._seq, value, now, span_id, trace_id, attributes)

    def metric(self, reader: Any = None) -> Any:
        """The current cumulative state as an SDK ``Metric`` (``None`` before the first ``add``)."""
        from opentelemetry.sdk.metrics.export import AggregationTemporality, Metric, NumberDataPoint, Sum

        now = time_ns()
        with self.lock:
            cursor = self._cursors.get(id(reader), 0)
            self._cursors[id(reader)] = self._seq
            live = [(p.attributes, p.value, p.exemplar if p.exemplar and p.exemplar[0] > cursor else None)
                    for p in self._points.values()]
        if not live:
            return None
        points = [NumberDataPoint(attributes=attrs, start_time_unix_nano=self.start_time, time_unix_nano=now,
                                  value=value, exemplars=_exemplars(attrs, [ex]) if ex else [])
                  for attrs, value, ex in live]
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=Sum(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE,
                               is_monotonic=True))

    def merge_into(self, data: Any, reader: Any = None) -> Any:
        return merge_metric(data, self.metric(reader), self.scope, self.resource)


def lean_sum(meter_provider: Any, name: str, unit: str, description: str,
             scope_identity: tuple[str, str, str | None]) -> LeanSum | None:
    """The :class:`LeanSum` for this provider and scope, or ``None`` (use the SDK counter): the
    provider must be the SDK's with every reader cumulative for counters and histograms."""
    try:
        from opentelemetry.sdk.metrics._internal.instrument import _Counter as SDKCounter
    except ImportError:  # pragma: no cover - checked by fastpath.detect
        return None
    if not readers_cumulative_for(meter_provider, SDKCounter):
        return None
    found = lean_metric(meter_provider, name, scope_identity, lambda scope, hook: LeanSum(
        name, unit, description, scope, hook.resource, exemplar_filter=hook.exemplar_filter))
    return found if isinstance(found, LeanSum) else None
