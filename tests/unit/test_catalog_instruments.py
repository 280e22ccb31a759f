"""Telemetry.instrument()'s lean counters and histograms export what the SDK's instruments would."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from sizewise_otel.fastpath import detach_lean_histograms, detect, lean_histogram
from sizewise_otel.fastpath.catalog_instruments import LeanCounter, LeanHistogramInstrument, lean_counter
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry

COUNTER, HISTOGRAM = "sizewise.hvac.calculations", "sizewise.hvac.calculation.duration"
TYPE, OUTCOME = "sizewise.hvac.calculation.type", "sizewise.hvac.calculation.outcome"


def _lean_or_public_path(tel: Telemetry) -> bool:
    """True when the fast path is on here; else (an SDK the fast path does not support, as in the floor
    and middle cells of the version matrix) asserts that the SDK's own instruments were handed out."""
    if detect.enabled():
        return True
    assert not isinstance(tel.instrument(COUNTER), LeanCounter | LeanHistogramInstrument)
    assert not isinstance(tel.instrument(HISTOGRAM), LeanCounter | LeanHistogramInstrument)
    return False


def _telemetry(reader: InMemoryMetricReader) -> Telemetry:
    return Telemetry(Settings(error_store_url="sqlite://"), readers=[reader], set_global=False)


def _points(reader: InMemoryMetricReader, name: str) -> list[dict[str, Any]]:
    """Every exported data point of ``name``, as comparable dicts (times and exemplars left out)."""
    found = []
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for p in metric.data.data_points:
                    point = {"scope": sm.scope.name, "unit": metric.unit, "attributes": dict(p.attributes),
                             "temporality": metric.data.aggregation_temporality}
                    if hasattr(p, "bucket_counts"):
                        point.update(count=p.count, sum=round(p.sum, 9), min=p.min, max=p.max,
                                     buckets=list(p.bucket_counts), bounds=list(p.explicit_bounds))
                    else:
                        point.update(value=p.value, monotonic=metric.data.is_monotonic)
                    found.append(point)
    return sorted(found, key=repr)


def _record_workload(tel: Telemetry) -> None:
    calculations, durations = tel.instrument(COUNTER), tel.instrument(HISTOGRAM)
    for i in range(50):
        kind = ("round_duct", "pressure_drop")[i % 2]
        calculations.add(1, {TYPE: kind, OUTCOME: "success"})
        calculations.add(2, {OUTCOME: "success", TYPE: kind})  # the same set in another order
        durations.record(0.001 * i, {TYPE: kind, "not.in.catalog": str(i)})  # the view's allow-list drops it
    calculations.add(1, {TYPE: "tags", OUTCOME: "error", "list.valued": ["a", "b"]})  # cleaned to a tuple
    calculations.add(1)
    durations.record(2.5)


def test_lean_instruments_export_what_the_sdk_instruments_export(monkeypatch: pytest.MonkeyPatch) -> None:
    detect.reset_for_tests()
    monkeypatch.delenv(detect.ENV, raising=False)
    probe = _telemetry(InMemoryMetricReader())
    lean_here = _lean_or_public_path(probe)
    probe.shutdown()
    if not lean_here:
        return
    exported = {}
    for fast in (False, True):  # the public path's SDK instruments, then the fast path's lean ones
        detect.reset_for_tests()
        if fast:
            monkeypatch.delenv(detect.ENV, raising=False)
        else:
            monkeypatch.setenv(detect.ENV, "0")
        reader = InMemoryMetricReader()
        tel = _telemetry(reader)
        try:
            assert isinstance(tel.instrument(COUNTER), LeanCounter) is fast
            assert isinstance(tel.instrument(HISTOGRAM), LeanHistogramInstrument) is fast
            _record_workload(tel)
            exported[fast] = {name: _points(reader, name) for name in (COUNTER, HISTOGRAM)}
        finally:
            tel.shutdown()
    detect.reset_for_tests()
    assert exported[True] == exported[False]
    assert len(exported[True][COUNTER]) == 4 and len(exported[True][HISTOGRAM]) == 3  # the workload's sets


def test_negative_nan_and_infinite_amounts_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    reader = InMemoryMetricReader()
    tel = _telemetry(reader)
    try:
        if not _lean_or_public_path(tel):
            return
        counter, histogram = tel.instrument(COUNTER), tel.instrument(HISTOGRAM)
        counter.add(3, {TYPE: "round_duct"})
        with caplog.at_level(logging.WARNING, logger="sizewise.fastpath"):
            counter.add(-1, {TYPE: "round_duct"})
            counter.add(float("nan"), {TYPE: "round_duct"})
            counter.add(float("inf"), {TYPE: "round_duct"})
            histogram.record(-0.5, {TYPE: "round_duct"})
        assert [p["value"] for p in _points(reader, COUNTER)] == [3]
        assert _points(reader, HISTOGRAM) == []
        assert sum("finite non-negative" in r.getMessage() for r in caplog.records) == 4
        with pytest.raises(TypeError):
            counter.add("1", {TYPE: "round_duct"})  # type: ignore[arg-type]  # as the SDK's comparison raises
    finally:
        tel.shutdown()


@pytest.mark.parametrize("sampled", [True, False])
def test_exemplars_follow_the_trace_based_filter(sampled: bool) -> None:
    reader = InMemoryMetricReader()
    tel = _telemetry(reader)
    tracer = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF).get_tracer("t")
    try:
        if not _lean_or_public_path(tel):
            return
        with tracer.start_as_current_span("request") as span:
            tel.instrument(COUNTER).add(1, {TYPE: "round_duct", OUTCOME: "success"})
            tel.instrument(HISTOGRAM).record(0.02, {TYPE: "round_duct", "dropped.by.view": "x"})
        ctx = span.get_span_context()
        data = reader.get_metrics_data()
        exemplars = {m.name: p.exemplars for rm in data.resource_metrics for sm in rm.scope_metrics
                     for m in sm.metrics if m.name in (COUNTER, HISTOGRAM) for p in m.data.data_points}
        if not sampled:
            assert exemplars == {COUNTER: [], HISTOGRAM: []}
            return
        (counter_ex,), (hist_ex,) = exemplars[COUNTER], exemplars[HISTOGRAM]
        assert (counter_ex.trace_id, counter_ex.span_id, counter_ex.value) == (ctx.trace_id, ctx.span_id, 1)
        assert (hist_ex.trace_id, hist_ex.span_id, hist_ex.value) == (ctx.trace_id, ctx.span_id, 0.02)
        assert hist_ex.filtered_attributes == {"dropped.by.view": "x"}  # as the SDK keeps what the view drops
        again = reader.get_metrics_data()  # collected once: the next collection has no exemplar
        assert all(not p.exemplars for rm in again.resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics if m.name == COUNTER for p in m.data.data_points)
    finally:
        tel.shutdown()


def test_attribute_sets_past_the_cardinality_limit_go_to_the_overflow_point() -> None:
    reader = InMemoryMetricReader()
    tel = _telemetry(reader)
    try:
        if not _lean_or_public_path(tel):
            return
        counter = tel.instrument(COUNTER)
        for i in range(2500):
            counter.add(1, {TYPE: f"t{i}"})
        points = _points(reader, COUNTER)
        assert len(points) == 2000  # the SDK's default limit, the overflow point included
        overflow = [p for p in points if p["attributes"] == {"otel.metric.overflow": True}]
        assert [p["value"] for p in overflow] == [501]
        assert sum(p["value"] for p in points) == 2500
    finally:
        tel.shutdown()


def test_after_the_hook_is_removed_the_sdk_instrument_records() -> None:
    reader = InMemoryMetricReader()
    tel = _telemetry(reader)

    def streams() -> list[Any]:
        data = reader.get_metrics_data()
        return [m for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics
                for m in sm.metrics if m.name == COUNTER]

    try:
        if not _lean_or_public_path(tel):
            return
        counter = tel.instrument(COUNTER)
        counter.add(1, {TYPE: "round_duct"})
        assert detach_lean_histograms(tel.meter_provider)  # the last handle.uninstrument()
        assert streams() == []  # the lean sum left the exports with its hook
        counter.add(5, {TYPE: "round_duct"})
        (stream,) = streams()
        assert [p.value for p in stream.data.data_points] == [5]  # the SDK's own stream from now on
        scope = ("sizewise_otel", tel.settings.service_version, None)
        assert lean_histogram(tel.meter_provider, HISTOGRAM, "s", "", [1.0], scope) is not None  # a new hook
        counter.add(2, {TYPE: "round_duct"})
        (stream,) = streams()  # still one stream of the name, never two
        assert [p.value for p in stream.data.data_points] == [7]
    finally:
        tel.shutdown()


def test_sdk_instruments_where_a_lean_aggregation_would_differ() -> None:
    delta = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA,
                                                        Histogram: AggregationTemporality.DELTA})
    tel = _telemetry(delta)
    try:
        assert not isinstance(tel.instrument(COUNTER), LeanCounter)  # delta readers: the SDK aggregates
    finally:
        tel.shutdown()
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()], exemplar_filter=AlwaysOnExemplarFilter())
    sdk_counter = provider.get_meter("m").create_counter(COUNTER)
    scope = ("m", "", None)
    assert lean_counter(provider, sdk_counter, COUNTER, "1", "", scope) is sdk_counter  # a filter we do not mirror
    provider.shutdown()
