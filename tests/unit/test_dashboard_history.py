"""In-process evaluation of widget expressions and the bounded multi-resolution history."""

from __future__ import annotations

import math

import pytest

from sizewise_otel.dashboard.expr import (
    Filter,
    Samples,
    bucket_quantile,
    count_,
    increase,
    m,
    max_,
    quantile,
    rate,
    sum_,
)
from sizewise_otel.dashboard.history import (
    MAX_SERIES,
    MEMORY_BOUND_BYTES,
    POINTS_PER_SERIES,
    TIERS,
    History,
    read_registry,
)


def lbl(**kw: str):
    return tuple(sorted(kw.items()))


def snaps(*points):
    """points: (ts, {name: {labels: value}})"""
    return Samples(list(points))


def test_rate_and_increase_handle_counter_resets() -> None:
    s = snaps((0.0, {"c_total": {lbl(a="x"): 10.0}}),
              (5.0, {"c_total": {lbl(a="x"): 20.0}}),
              (10.0, {"c_total": {lbl(a="x"): 5.0}}))  # reset: +5
    assert rate(m("c_total")).evaluate(s) == {lbl(a="x"): pytest.approx(15 / 10)}
    assert increase(m("c_total")).evaluate(s) == {lbl(a="x"): pytest.approx(15)}


def test_matchers_aggregation_and_arithmetic() -> None:
    s = snaps((0.0, {"r_total": {lbl(outcome="success", t="a"): 0.0, lbl(outcome="error", t="a"): 0.0,
                                 lbl(outcome="success", t="b"): 0.0}}),
              (10.0, {"r_total": {lbl(outcome="success", t="a"): 90.0, lbl(outcome="error", t="a"): 10.0,
                                  lbl(outcome="success", t="b"): 100.0}}))
    ok = 100 * sum_(rate(m("r_total", outcome="success"))).or_zero() / sum_(rate(m("r_total")))
    assert ok.evaluate(s) == {(): pytest.approx(95.0)}
    by_t = sum_(rate(m("r_total", outcome="~succ.*")), "t")
    assert by_t.evaluate(s) == {lbl(t="a"): pytest.approx(9.0), lbl(t="b"): pytest.approx(10.0)}
    assert sum_(rate(m("r_total", outcome="nope"))).or_zero().evaluate(s) == {(): 0.0}
    assert sum_(rate(m("r_total", outcome="!success"))).evaluate(s) == {(): pytest.approx(1.0)}


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.95, buckets) == pytest.approx(0.75)
    assert bucket_quantile(0.5, [(math.inf, 0.0), (1.0, 0.0)]) is None
    s = snaps((0.0, {"h_bucket": {lbl(le=str(b), r="/x"): 0.0 for b, _ in buckets[:-1]}
                     | {lbl(le="+Inf", r="/x"): 0.0}}),
              (10.0, {"h_bucket": {lbl(le=str(b), r="/x"): c for b, c in buckets[:-1]}
                      | {lbl(le="+Inf", r="/x"): 100.0}}))
    assert quantile(0.95, "h", "r").evaluate(s) == {lbl(r="/x"): pytest.approx(0.75)}


def test_gauge_filter_and_count() -> None:
    s = snaps((0.0, {"g": {lbl(check="a"): 0.0, lbl(check="b"): 2.0, lbl(check="c"): 1.0}}))
    assert count_(Filter(m("g"), 0)).or_zero().evaluate(s) == {(): 2.0}
    assert max_(m("g"), "check").evaluate(s)[lbl(check="b")] == 2.0
    healthy = snaps((0.0, {"g": {lbl(check="a"): 0.0}}))
    assert count_(Filter(m("g"), 0)).or_zero().evaluate(healthy) == {(): 0.0}


def test_promql_rendering() -> None:
    e = 100 * sum_(rate(m("x_total", code="~5.."))).or_zero() / sum_(rate(m("x_total")))
    text = e.promql()
    assert 'code=~"5.."' in text and "or vector(0)" in text and "[$__rate_interval]" in text
    assert e.metric_names() == {"x_total"}
    assert e.label_names() == {"code"}


def test_tiers_are_the_spec_retention() -> None:
    assert [(t.name, t.step, t.points) for t in TIERS] == [("1h", 5.0, 720), ("24h", 60.0, 1440),
                                                          ("7d", 900.0, 672)]
    assert POINTS_PER_SERIES == 2832
    assert MEMORY_BOUND_BYTES == MAX_SERIES * 2832 * 4 <= 6 * 1024 * 1024


def test_history_downsamples_into_each_tier() -> None:
    h = History()
    t0 = 1_000_000 * 900.0  # aligned to every tier
    for i in range(0, 24 * 12):  # 24 minutes at 5 s
        h.record(t0 + i * 5, {("w:cpu:0", ()): float(i % 12)})
    fine = h.series("w:cpu:0", "1h", now=t0 + 24 * 60)[()]
    assert len(fine) == 24 * 12
    assert fine[0] == (t0, 0.0)
    minute = h.series("w:cpu:0", "24h", now=t0 + 24 * 60)[()]
    assert len(minute) == 24
    assert minute[0][1] == pytest.approx(5.5)  # mean of 0..11
    slow = h.series("w:cpu:0", "7d", now=t0 + 24 * 60)[()]
    assert len(slow) == 2 and slow[0][0] == t0


def test_history_ring_wraps_and_stays_bounded() -> None:
    h = History(max_series=3)
    t0 = 900.0 * 1000
    for i in range(800):  # more than the 720 points of the 1 h tier
        h.record(t0 + i * 5, {(f"w:{k}:0", ()): float(i) for k in range(5)})
    assert h.stats()["series"] == 3
    assert h.dropped_series > 0
    pts = h.series("w:0:0", "1h", now=t0 + 800 * 5)[()]
    assert len(pts) <= 720
    assert pts[-1][1] == 799.0
    assert all(len(arr) == t.points for tier, t in zip(h.tiers, TIERS, strict=True)
               for arr in tier.values.values())


def test_nan_and_inf_are_not_recorded() -> None:
    h = History()
    h.record(0.0, {("w:x:0", ()): math.nan, ("w:y:0", ()): math.inf})
    assert h.stats()["series"] == 0


def test_read_registry_drops_scope_labels_and_adds_up() -> None:
    from prometheus_client import CollectorRegistry, Counter

    reg = CollectorRegistry()
    Counter("demo_things", "things", ["kind"], registry=reg).labels("a").inc(3)
    snap = read_registry({"demo_things_total", "up"}, registry=reg)
    assert snap["demo_things_total"] == {lbl(kind="a"): 3.0}
    assert snap["up"] == {(): 1.0}


def test_collect_samples_translates_only_the_named_otel_metrics() -> None:
    """The sampler's and evaluator's read: the same samples ``REGISTRY.collect()`` yields for those
    names; with the fast path from one private SDK collection, only the wanted metrics translated
    (without it the reader is the SDK's own and the read is ``REGISTRY.collect()`` filtered)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY

    from sizewise_otel.dashboard import history
    from sizewise_otel.fastpath import enabled
    from sizewise_otel.fastpath.exposition import FastPrometheusMetricReader, prometheus_reader

    reader = prometheus_reader()
    assert isinstance(reader, FastPrometheusMetricReader) == enabled()
    assert isinstance(reader, PrometheusMetricReader)
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("test-collect-samples")
        wanted = meter.create_counter("zz_collect_wanted", unit="By")
        other = meter.create_histogram("zz_collect_other", unit="s")
        for i in range(5):
            wanted.add(i + 1, {"k": str(i)})
            other.record(0.1 * i, {"k": str(i)})
        names = {"zz_collect_wanted_bytes_total", "zz_collect_other_seconds_count"}

        def full(keep: set[str]) -> list[tuple[str, tuple, float]]:
            return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                          for f in REGISTRY.collect() for s in f.samples if s.name in keep)

        def fast(keep: set[str]) -> list[tuple[str, tuple, float]]:
            return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                          for s in history.collect_samples(keep, registry=REGISTRY))

        expected = full(names)
        assert len(expected) == 10
        assert fast(names) == expected
        only = {"zz_collect_wanted_bytes_total"}
        assert fast(only) == full(only)
        if not enabled():
            return
        translated: list[str] = []
        original = reader._collector._translate_metric
        reader._collector._translate_metric = lambda **kw: (translated.append(kw["metric"].name),
                                                            original(**kw))[1]
        try:
            fast(only)
        finally:
            del reader._collector._translate_metric
        assert translated == ["zz_collect_wanted"]
        # the private collection left nothing behind for the next scrape
        assert not reader._collector._metrics_datas
    finally:
        provider.shutdown()  # unregisters the reader's collector


def test_metrics_retention_hours_cuts_the_tiers_and_their_memory() -> None:
    from sizewise_otel.dashboard.history import History

    full, short = History(), History(retention_hours=2)
    assert [t.spec.points for t in full.tiers] == [720, 1440, 672]
    assert [t.spec.points for t in short.tiers] == [720, 120, 8]  # 1 h kept whole; 2 h of 1 min; 2 h of 15 min
    assert [t.spec.points for t in History(retention_hours=24 * 90).tiers] == [720, 1440, 672]
    key = ("sizewise_cpu_usage_percent", ())
    for minute in range(300):  # 5 h of one value a minute: the 2 h tiers keep only the last 2 h
        short.record(minute * 60.0, {key: float(minute)})
    kept = short.tiers[1].read("sizewise_cpu_usage_percent", 299 * 60.0)[()]
    assert [v for _, v in kept][-1] == 299.0 and len(kept) <= 120 and kept[0][1] >= 180.0
