"""Cheaper SDK collection for the Prometheus reader: its sums and gauges without exemplar work.

Every reader of a ``MeterProvider`` has its own aggregation per attribute set. At 10k series a
collection spends most of its time in two things the Prometheus reader never uses: the exemplar
reservoir (locked, sorted and reset per point, then dropped by the exporter, whose text format has
no place for exemplars) and the frozen-dataclass ``NumberDataPoint`` (about 1.4 us each).

:func:`install` gives one reader sum and last-value aggregations whose ``collect`` computes the same
value under the same lock and returns a :class:`LightPoint` (the same attribute names, slotted), and
which never offer to or read a reservoir. Only the aggregations the reader creates from
``DefaultAggregation`` are affected; a View's explicit aggregation, every other reader (OTLP keeps
its exemplars) and histograms keep the SDK's code.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics._internal.aggregation import (
    AggregationTemporality,
    DefaultAggregation,
    _LastValueAggregation,
    _SumAggregation,
)

_DELTA, _CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
_NO_EXEMPLARS: tuple[()] = ()


class LightPoint:
    """A ``NumberDataPoint`` as far as exporters read one (its five fields), cheap to build."""

    __slots__ = ("attributes", "exemplars", "start_time_unix_nano", "time_unix_nano", "value")

    def __init__(self, attributes: Any, start_time_unix_nano: int | None, time_unix_nano: int,
                 value: int | float) -> None:
        self.attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.value = value
        self.exemplars = _NO_EXEMPLARS

    def __repr__(self) -> str:
        return f"LightPoint(attributes={self.attributes!r}, value={self.value!r})"


def _no_offer(self: Any, measurement: Any, should_sample_exemplar: bool) -> None:
    """The reservoir is never offered to (its reader drops exemplars)."""


def _no_exemplars(self: Any) -> Any:
    return _NO_EXEMPLARS


class _LightSum(_SumAggregation):
    # One base only: a mixin changes the object layout and __class__ assignment refuses it.
    _sample_exemplar, _collect_exemplars = _no_offer, _no_exemplars
    _light_point: LightPoint | None = None  # the last point returned (synchronous instruments)

    def collect(self, collection_aggregation_temporality: Any, collection_start_nano: int) -> Any:
        if collection_aggregation_temporality is not _CUMULATIVE:
            return super().collect(collection_aggregation_temporality, collection_start_nano)
        if self._instrument_aggregation_temporality is _DELTA:  # a synchronous instrument
            # Nothing added since the last collection: the cumulative value is the last point's,
            # so return that point without the lock. ``_value`` is read first and a fold below
            # stores its point before it clears ``_value``, so the point read is never older than
            # the state seen (its time_unix_nano is the collection that made it: unused by this
            # reader's consumers, which drop timestamps).
            if self._value is None:
                point = self._light_point
                if point is not None:
                    return point
            with self._lock:  # _SumAggregation.collect's DELTA -> CUMULATIVE branch
                value = self._value
                self._previous_value = total = (0 if value is None else value) + self._previous_value
                point = self._light_point = LightPoint(self._attributes, self._start_time_unix_nano,
                                                       collection_start_nano, total)
                self._value = None
            return point
        with self._lock:  # an asynchronous instrument: its callback's value, if it produced one
            value = self._value
            self._value = None
        if value is None:
            return None
        return LightPoint(self._attributes, self._start_time_unix_nano, collection_start_nano, value)


class _LightLastValue(_LastValueAggregation):
    _sample_exemplar, _collect_exemplars = _no_offer, _no_exemplars

    def collect(self, collection_aggregation_temporality: Any, collection_start_nano: int) -> Any:
        with self._lock:
            value = self._value
            if value is None:
                return None
            if not (self._instrument_is_synchronous and collection_aggregation_temporality is _CUMULATIVE):
                self._value = None
        return LightPoint(self._attributes, None, collection_start_nano, value)


_LIGHT = {_SumAggregation: _LightSum, _LastValueAggregation: _LightLastValue}


class LightDefaultAggregation(DefaultAggregation):
    """``DefaultAggregation``, with the sum and last-value aggregations it creates made light."""

    def _create_aggregation(self, *args: Any, **kwargs: Any) -> Any:
        aggregation = super()._create_aggregation(*args, **kwargs)
        light = _LIGHT.get(type(aggregation))
        if light is not None:
            aggregation.__class__ = light  # same layout: the subclasses add methods only
        return aggregation


def install(reader: Any) -> bool:
    """Make ``reader``'s default aggregations light; call before a ``MeterProvider`` takes the reader."""
    table = getattr(reader, "_instrument_class_aggregation", None)
    if not isinstance(table, dict):
        return False
    for cls, aggregation in table.items():
        if type(aggregation) is DefaultAggregation:
            table[cls] = LightDefaultAggregation()
    return True


def probe_meter_provider(reader: Any) -> Any:
    """A ``MeterProvider`` for a probe that reads nothing from the environment: an invalid
    ``OTEL_METRICS_EXEMPLAR_FILTER`` makes the SDK raise, ``OTEL_RESOURCE_ATTRIBUTES`` and the resource
    detectors are not the probe's business (``OTEL_SDK_DISABLED`` is decided before any probe)."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.resources import Resource

    return MeterProvider(metric_readers=[reader], resource=Resource.get_empty(),
                         exemplar_filter=AlwaysOffExemplarFilter(), shutdown_on_exit=False)


def probe() -> bool:
    """The SDK internals the light aggregations read are all there (detect.py's check)."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    if not install(reader):
        return False
    provider = probe_meter_provider(reader)  # nothing read from the environment
    try:
        meter = provider.get_meter("sizewise.fastpath.probe")
        meter.create_counter("c").add(2, {"k": "v"})
        meter.create_up_down_counter("u").add(-1)
        meter.create_gauge("g").set(3)
        meter.create_observable_counter("o", [lambda _options: [_observation(5)]])
        data = reader.get_metrics_data()
        got = {m.name: [(type(p), dict(p.attributes or {}), p.value) for p in m.data.data_points]
               for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        return got == {"c": [(LightPoint, {"k": "v"}, 2)], "u": [(LightPoint, {}, -1)],
                       "g": [(LightPoint, {}, 3)], "o": [(LightPoint, {}, 5)]}
    finally:
        provider.shutdown()


def _observation(value: float) -> Any:
    from opentelemetry.metrics import Observation

    return Observation(value)
