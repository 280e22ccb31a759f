"""The lean histogram and the reader hook that exports it (the metrics side of the fast path).

An SDK ``Histogram.record`` validates, copies, filters and hashes its attribute dict on every call;
:class:`LeanHistogram` resolves an attribute set once (:meth:`LeanHistogram.point`) and a
measurement is a bisect and four additions under a lock. At collection time every reader of the SDK
``MeterProvider`` gets a standard cumulative ``Histogram`` metric merged into what the SDK
collected (:func:`lean_histogram` installs that hook through the reader's private collect
callback; :func:`detach_lean_histograms` removes it again).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from sizewise_otel.fastpath.exemplars import ALWAYS, OFF, TRACE_BASED, ExemplarPolicy


class LeanPoint:
    """One attribute set's cumulative histogram state.

    ``exemplars`` is ``None`` until the first exemplar, then one slot per bucket (the
    AlignedHistogramBucketExemplarReservoir's layout): the latest offered measurement in that bucket
    as ``(seq, value, time_unix_nano, span_id, trace_id, measurement_attributes)``. Fixed size, so
    memory is bounded by buckets x attribute sets whatever the traffic.
    """

    __slots__ = ("attributes", "count", "counts", "exemplars", "max", "min", "sum")

    def __init__(self, attributes: dict[str, Any], buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: list[tuple[Any, ...] | None] | None = None


def bounded_point(points: dict[Any, Any], lock: threading.Lock, limit: int, key: Any,
                  attributes: dict[str, Any], make: Callable[[dict[str, Any]], Any]) -> Any:
    """The point for ``key`` in ``points``, made (``make(a copy of attributes)``) under ``lock`` if new;
    past ``limit`` attribute sets, the overflow point (the SDK's cardinality limit and overflow set)."""
    with lock:
        found = points.get(key)
        if found is None:
            if len(points) >= limit - 1:
                key, attributes = "__overflow__", {"otel.metric.overflow": True}
                found = points.get(key)
            if found is None:
                found = points[key] = make(dict(attributes))
        return found


class LeanHistogram:
    """``http.server.request.duration`` aggregated in the layer, exported by the SDK's readers.

    An SDK ``Histogram.record`` validates, copies, filters and hashes the attribute dict on every
    call: on the 2-core reference machine that is the largest single cost of an instrumented
    request (about 20 us against 5 us for everything else the layer does). Here the attribute set
    is resolved once per (method, route, status) and a measurement is a bisect and four additions
    under a lock. At collection time each registered reader gets a standard cumulative
    ``Histogram`` metric (explicit buckets, count, sum, min, max) under the layer's scope, merged
    into what the SDK collected, so the Prometheus and OTLP exporters see exactly what the SDK
    instrument would have produced.

    Exemplars follow the provider's exemplar filter (trace-based by default) and the SDK's
    ``AlignedHistogramBucketExemplarReservoir``: per data point and bucket, the latest measurement
    offered since the reader's previous collection, with the trace and span id of the request's
    span. Each reader has its own cursor (a sequence number), as each SDK reader has its own
    reservoir: a collection by one reader does not hide exemplars from another. Offering one is a
    few extra writes under the same lock, and only on requests whose span is sampled.

    It needs the SDK MeterProvider and cumulative histogram temporality on every reader; when
    either is missing, :func:`lean_histogram` returns ``None`` and the layer records through the
    SDK instrument instead.
    """

    def __init__(self, name: str, unit: str, description: str, bounds: Iterable[float],
                 scope: Any, resource: Any, cardinality_limit: int = 2000, exemplar_filter: Any = None) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(float(b) for b in bounds)
        self.scope = scope
        self.resource = resource
        self.cardinality_limit = cardinality_limit
        self.start_time = time_ns()
        self._points: dict[Any, LeanPoint] = {}
        self.lock = threading.Lock()  # public: a cache counts its operations under it too
        self.exemplar_filter = exemplar_filter
        self.policy = ExemplarPolicy.of(exemplar_filter)
        self.exemplar_mode = self.policy.mode
        self._seq = 0  # exemplars offered so far; readers remember where they last collected
        self._cursors: dict[int, int] = {}
        self.detached = False  # set when its reader hook is removed: no reader exports it any more

    def point(self, key: Any, attributes: dict[str, Any]) -> LeanPoint:
        found = self._points.get(key)
        if found is None:
            buckets = len(self.bounds) + 1
            found = bounded_point(self._points, self.lock, self.cardinality_limit, key, attributes,
                                  lambda attrs: LeanPoint(attrs, buckets))
        return found

    def record(self, point: LeanPoint, value: float, cell: list[int] | None = None) -> None:
        """One measurement into ``point``; with ``cell``, also ``cell[0] += 1`` under the same lock (a
        cache's operation count: one acquisition for both).

        The one place a point's state changes, written out here rather than in a method of the point:
        it runs for every measurement (several a request), where a Python call costs about as much as
        the additions themselves.
        """
        index = bisect_left(self.bounds, value)
        with self.lock:
            if cell is not None:
                cell[0] += 1
            point.counts[index] += 1
            point.count += 1
            point.sum += value
            if value < point.min:
                point.min = value
            if value > point.max:
                point.max = value

    def record_with_exemplar(self, point: LeanPoint, value: float, span_id: int | None, trace_id: int | None,
                             attributes: dict[str, Any] | None) -> None:
        """:meth:`record`, and the measurement kept as its bucket's exemplar (the latest wins)."""
        self.record(point, value)
        index = bisect_left(self.bounds, value)
        now = time_ns()
        with self.lock:  # a collection in between sees the count first: exemplars are samples
            self._seq += 1
            slots = point.exemplars
            if slots is None:
                slots = point.exemplars = [None] * len(point.counts)
            slots[index] = (self._seq, value, now, span_id, trace_id, attributes)

    def offer(self, point: LeanPoint, value: float, span: trace.Span, attributes: dict[str, Any]) -> None:
        """Record ``value``, with an exemplar when the provider's exemplar filter takes it.

        ``span`` is the request's span, current in the active context (what the SDK's filter and
        reservoir read the trace and span id from).
        """
        mode = self.exemplar_mode
        if mode == OFF:
            self.record(point, value)
            return
        ctx = span.get_span_context()
        if mode == TRACE_BASED:
            take = ctx.trace_flags.sampled
        elif mode == ALWAYS:
            take = True
        else:
            try:
                take = bool(self.exemplar_filter.should_sample(value, time_ns(), attributes,
                                                               otel_context.get_current()))
            except Exception:  # a broken custom filter must never fail the request
                take = False
        if not take:
            self.record(point, value)
        elif ctx.is_valid:
            self.record_with_exemplar(point, value, ctx.span_id, ctx.trace_id, attributes)
        else:
            self.record_with_exemplar(point, value, None, None, attributes)

    def metric(self, reader: Any = None) -> Any:
        """The current cumulative state as an SDK ``Metric`` (``None`` before the first request).

        ``reader`` identifies the collecting reader: its data points carry the exemplars offered
        since that reader's previous collection (the SDK reservoir's collect-and-reset).
        """
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            HistogramDataPoint,
            Metric,
        )
        from opentelemetry.sdk.metrics.export import Histogram as HistogramData

        now = time_ns()
        reader_key = id(reader)
        with self.lock:
            cursor = self._cursors.get(reader_key, 0)
            self._cursors[reader_key] = self._seq
            live = [(p, p.count, p.sum, list(p.counts), p.min, p.max,
                     [e for e in p.exemplars if e is not None and e[0] > cursor] if p.exemplars else None)
                    for p in self._points.values() if p.count]
        if not live:
            return None
        points = [HistogramDataPoint(
            attributes=p.attributes, start_time_unix_nano=self.start_time, time_unix_nano=now,
            count=count, sum=total, bucket_counts=counts, explicit_bounds=self.bounds,
            min=low, max=high, exemplars=_exemplars(p.attributes, slots) if slots else [])
            for p, count, total, counts, low, high, slots in live]
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=HistogramData(data_points=points,
                                         aggregation_temporality=AggregationTemporality.CUMULATIVE))

    def merge_into(self, data: Any, reader: Any = None) -> Any:
        """``data`` (what the SDK collected for one reader) with this histogram added."""
        return merge_metric(data, self.metric(reader), self.scope, self.resource)


def merge_metric(data: Any, metric: Any, scope: Any, resource: Any) -> Any:
    """``data`` (what the SDK collected for one reader) with ``metric`` added under ``scope``."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics

    if metric is None:
        return data
    resource_metrics = list(data.resource_metrics) if data is not None else []
    if not resource_metrics:
        return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, [metric], scope.schema_url)], "")])
    first = resource_metrics[0]
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope == scope:
            scopes[i] = ScopeMetrics(sm.scope, [*sm.metrics, metric], sm.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(scope, [metric], scope.schema_url))
    resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
    return MetricsData(resource_metrics)


def _exemplars(point_attributes: dict[str, Any], slots: list[tuple[Any, ...]]) -> list[Any]:
    """SDK ``Exemplar`` objects, as ``ExemplarBucket.collect`` builds them (bucket order)."""
    from opentelemetry.sdk.metrics import Exemplar

    out = []
    for _seq, value, when, span_id, trace_id, attributes in slots:
        # The measurement's attributes not already on the data point (none, unless the point is
        # the cardinality-overflow point), exactly as the SDK filters them.
        filtered = {k: v for k, v in attributes.items() if k not in point_attributes} if attributes else None
        out.append(Exemplar(filtered, value, when, span_id, trace_id))
    return out


class _ReaderHook:
    """The collect callback of every reader of one SDK ``MeterProvider``: the SDK's own collection,
    then each lean histogram merged in. Installed once per provider, removable."""

    def __init__(self, provider: Any, readers: list[Any]) -> None:
        self.provider = provider
        # Every lean metric of the provider (histograms here, sums in lean_sum.py), by (name, scope).
        self.histograms: dict[tuple[str, tuple[str, str, str | None]], Any] = {}
        self.originals = [(reader, reader._collect) for reader in readers]
        self.resource = provider._sdk_config.resource
        self.exemplar_filter = getattr(provider._sdk_config, "exemplar_filter", None)
        for reader, inner in self.originals:
            def collect(reader_: Any, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
                data = _inner(reader_, *args, **kwargs)
                for hist in list(self.histograms.values()):
                    data = hist.merge_into(data, reader_)
                return data

            reader._set_collect_callback(collect)

    def remove(self) -> None:
        for reader, inner in self.originals:
            reader._set_collect_callback(inner)
        for lean in self.histograms.values():
            lean.detached = True
        self.histograms.clear()


_hooks: dict[int, _ReaderHook] = {}
_hooks_lock = threading.Lock()


def lean_histogram(meter_provider: Any, name: str, unit: str, description: str, bounds: Iterable[float],
                   scope_identity: tuple[str, str, str | None]) -> LeanHistogram | None:
    """The :class:`LeanHistogram` for this provider and scope, or ``None`` (use the SDK instrument).

    One per (provider, scope, name), shared by every app instrumented in the process, as the SDK
    instrument would be: two apps must add into one stream, not export two same-named metrics.
    ``None`` when the provider is not the SDK's, has no reader, or a reader is not cumulative for
    histograms.
    """
    return lean_metric(meter_provider, name, scope_identity, lambda scope, hook: LeanHistogram(
        name, unit, description, bounds, scope, hook.resource, exemplar_filter=hook.exemplar_filter))


def lean_metric(meter_provider: Any, name: str, scope_identity: tuple[str, str, str | None],
                build: Callable[[Any, _ReaderHook], Any]) -> Any:
    """The lean metric ``name`` of this provider and scope, built by ``build(scope, hook)`` the first
    time (the reader hook installed with the first one); ``None`` when no hook can be installed."""
    with _hooks_lock:
        hook = _hooks.get(id(meter_provider))
        if hook is None or hook.provider is not meter_provider:
            hook = _install_hook(meter_provider)
            if hook is None:
                return None
            _hooks[id(meter_provider)] = hook
        key = (name, scope_identity)
        found = hook.histograms.get(key)
        if found is None:
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope

            scope = InstrumentationScope(scope_identity[0], scope_identity[1], scope_identity[2])
            found = hook.histograms[key] = build(scope, hook)
        return found


def readers_cumulative_for(meter_provider: Any, instrument_class: type) -> bool:
    """True when every reader of the SDK provider aggregates ``instrument_class`` cumulatively."""
    try:
        from opentelemetry.sdk.metrics.export import AggregationTemporality

        readers = [*meter_provider._metric_readers, *meter_provider._measurement_consumer._reader_storages]
        return bool(readers) and all(
            r._instrument_class_temporality.get(instrument_class) is AggregationTemporality.CUMULATIVE
            for r in readers)
    except (AttributeError, TypeError):
        return False


def detach_lean_histograms(meter_provider: Any) -> bool:
    """Give every reader of ``meter_provider`` its own collect callback back; ``True`` if one was hooked.

    The lean histograms' data leaves the exports with it; the next :func:`lean_histogram` starts afresh.
    """
    with _hooks_lock:
        hook = _hooks.pop(id(meter_provider), None)
    if hook is None or hook.provider is not meter_provider:
        return False
    hook.remove()
    return True


def _install_hook(meter_provider: Any) -> _ReaderHook | None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram as SDKHistogram

        if not isinstance(meter_provider, SDKMeterProvider):
            return None
        readers = list(dict.fromkeys([*meter_provider._metric_readers,
                                      *meter_provider._measurement_consumer._reader_storages]))
        if not readers:
            return None
        if not readers_cumulative_for(meter_provider, SDKHistogram):
            return None
        for reader in readers:
            if not callable(reader._collect) or not callable(getattr(reader, "_set_collect_callback", None)):
                return None
        return _ReaderHook(meter_provider, readers)
    except (AttributeError, ImportError, TypeError):
        return None
