"""The one-pass /metrics renderer prints what prometheus_client prints for PrometheusMetricReader."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from sizewise_otel.fastpath import detect, exposition
from sizewise_otel.fastpath.exposition import FastPrometheusMetricReader

NASTY = ['say "hi"', "back\\slash", "new\nline", "ünïcödé ☃", "", "all \\ \" \n of them", "\\n"]


def _families(text: str) -> list[tuple[Any, ...]]:
    """Everything a Prometheus server reads from a text exposition, in order."""
    out = []
    for family in text_string_to_metric_families(text):
        samples = [(s.name, tuple(sorted(s.labels.items())),
                    "NaN" if math.isnan(s.value) else s.value, s.timestamp, s.exemplar) for s in family.samples]
        out.append((family.name, family.type, family.documentation, family.unit, samples))
    return out


class _Setup:
    def __init__(self) -> None:
        self.plain_registry = CollectorRegistry(auto_describe=True)
        self.fast_registry = CollectorRegistry(auto_describe=True)
        self.plain = PrometheusMetricReader(registry=self.plain_registry)
        self.fast = FastPrometheusMetricReader(registry=self.fast_registry)
        views = [
            View(instrument_name="req.duration", aggregation=ExplicitBucketHistogramAggregation(
                [0.005, 0.01, 0.1, 1, 2.5, 10, 1_000_000, 12_345_678.5])),
            View(instrument_name="temperature.delta",
                 aggregation=ExplicitBucketHistogramAggregation([-10, 0, 1.5, 10])),
            View(instrument_name="sized", aggregation=ExplicitBucketHistogramAggregation([])),
        ]
        resource = Resource.create({"service.name": 'svc "quoted"', "service.instance.id": "i-1",
                                    "weird.key-ü": "multi\nline", "count": 3, "tags": ("a", "b")})
        self.provider = MeterProvider(metric_readers=[self.plain, self.fast], resource=resource, views=views)
        p = self.provider
        self.alpha = p.get_meter("alpha", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
        self.beta = p.get_meter("beta")
        self.gamma = p.get_meter("gamma", "0.1", attributes={"scope.attr": 'v"1'})

    def both(self) -> tuple[str, str]:
        return (generate_latest(self.plain_registry).decode(),
                exposition.generate_latest(self.fast_registry).decode())

    def shutdown(self) -> None:
        self.provider.shutdown()


def _public_path_gives_the_same_exposition() -> None:
    """What an SDK without the fast path gets: the fast path says it is off and why, ``GET /metrics``
    is the SDK's own ``PrometheusMetricReader`` through ``prometheus_client`` (byte for byte), and the
    targeted reads see exactly what ``REGISTRY.collect()`` sees."""
    found = detect.status()
    assert not found.enabled and found.reason.startswith("the installed SDK lacks "), found
    reader = exposition.prometheus_reader()
    assert type(reader) is PrometheusMetricReader
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("public.path")
        meter.create_counter("pp.requests", unit="{request}").add(3, {"route": 'say "hi"'})
        meter.create_histogram("pp.duration", unit="s").record(0.25, {"route": "/x"})
        ours = exposition.generate_latest(REGISTRY).decode()
        theirs = generate_latest(REGISTRY).decode()
        assert [(f[0], f[1], [(s[0], s[1]) for s in f[4]]) for f in _families(ours)] == \
            [(f[0], f[1], [(s[0], s[1]) for s in f[4]]) for f in _families(theirs)]
        assert 'pp_requests_total{' in ours and "pp_duration_seconds_bucket{" in ours
        wanted = {"pp_requests_total", "pp_duration_seconds_count"}
        picked = sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                        for s in exposition.collect_samples(wanted))
        assert [name for name, _, _ in picked] == ["pp_duration_seconds_count", "pp_requests_total"]
        assert [value for _, _, value in picked] == [1, 3]
    finally:
        provider.shutdown()


def fast_or_public(test: Callable[..., None]) -> Callable[..., None]:
    """The test itself where the fast path runs; elsewhere the public path's promise (never a skip)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        if detect.enabled():
            test(*args, **kwargs)
        else:
            _public_path_gives_the_same_exposition()
    return run


@pytest.fixture
def setup() -> Iterable[_Setup | None]:
    if not detect.enabled():  # the fast reader needs the SDK internals the detection found missing
        yield None
        return
    s = _Setup()
    yield s
    s.shutdown()


def _record_everything(s: _Setup) -> None:
    a, b, g = s.alpha, s.beta, s.gamma
    units = {"s": "duration.s", "By": "size.bytes", "%": "cpu.utilization", "{request}": "http.active",
             "1": "ratio.one", "ms": "latency", "m/s": "speed", "": "plain", "{packets}/s": "rate"}
    for unit, name in units.items():
        counter = a.create_counter(f"c.{name}", unit=unit, description=f"counter in {unit!r}")
        counter.add(3, {"k": "v"})
        counter.add(1.5, {"k": "w", "other": 1})
        a.create_up_down_counter(f"u.{name}", unit=unit).add(-2, {"k": "v"})
        a.create_gauge(f"g.{name}", unit=unit, description="gauge").set(1234567.0, {"k": "v"})
    # A name that already ends in the unit and in _total; descriptions with backslashes/newlines.
    a.create_counter("requests_total", unit="1", description="back\\slash\nnewline").add(7)
    a.create_counter("io.duration_seconds", unit="s").add(0.25, {"x": "y"})
    a.create_counter("x/y.count").add(5)  # "/" sanitized
    big = a.create_counter("big.values")
    big.add(10**6, {"n": "million"})
    big.add(10**15 + 3, {"n": "huge"})
    big.add(0.1 + 0.2, {"n": "float"})
    b.create_gauge("g.special").set(-1e-7, {"v": "tiny"})
    b.create_gauge("g.special").set(123456789012.0, {"v": "big"})
    # Label values needing escaping, attribute keys needing sanitizing, non-string values.
    esc = a.create_counter("escaping", unit="{item}")
    for i, value in enumerate(NASTY):
        esc.add(i + 1, {"v": value, "http.route": f"/p/{i}", "1st": True, "a-b": i, "ünï": 1.5,
                        "list": ["x", 'y"'], "flag": False})
    # Points of one metric with different key sets: the missing keys are backfilled with "".
    sparse = b.create_counter("sparse")
    sparse.add(1, {"a": "1"})
    sparse.add(1, {"b": "2"})
    sparse.add(1, {})
    sparse.add(1, {"a": "1", "z": "3", "m": "mid"})
    # Histograms: explicit float/int bounds, an unbounded one, a negative first bucket (no sum/count).
    hist = a.create_histogram("req.duration", unit="s", description="request duration")
    for v in (0.001, 0.004, 0.02, 0.5, 3, 99, 2_000_000, 1e9):
        hist.record(v, {"http.route": "/a", "method": "GET"})
    hist.record(0.2, {"http.route": '/b"\\', "method": "POST", "zz": "after le"})
    hist.record(0.3, {"aa": "before le"})
    hist.record(0.3, {})
    b.create_histogram("temperature.delta", unit="Cel").record(3, {"room": "x"})
    b.create_histogram("sized", unit="By").record(17)
    b.create_histogram("default.buckets", unit="ms").record(42, {"k": "v"})
    # An attribute sanitized to "le" on a histogram: prometheus_client's "le" wins.
    b.create_histogram("with.le").record(5, {"le": "mine", "q": "1"})
    # The same metric in two scopes with the same keys: one family, samples from both.
    for meter in (a, g):
        meter.create_counter("shared", unit="s", description="shared").add(2, {"k": "v"})
    # ... and with different keys: the family keeps the first stream's label names.
    a.create_up_down_counter("odd.shared").add(1, {"x": "1", "y": "2"})
    g.create_up_down_counter("odd.shared").add(1, {"a": "3"})
    # Observable instruments (deterministic callbacks: both readers collect separately).

    def obs(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(4, {"state": "idle"}), Observation(2.5, {"state": 'b"u\\s\ny'})]

    g.create_observable_counter("obs.counter", callbacks=[obs], unit="{request}", description="oc")
    g.create_observable_gauge("obs.gauge", callbacks=[obs], unit="%")
    g.create_observable_up_down_counter("obs.updown", callbacks=[obs], unit="By")


@fast_or_public
def test_same_families_samples_labels_and_values(setup: _Setup) -> None:
    _record_everything(setup)
    plain, fast = setup.both()
    assert _families(fast) == _families(plain)
    # Not only the same meaning: the same bytes, line for line.
    assert fast == plain
    names = {f[0] for f in _families(fast)}
    assert {"target_info", "c_duration_s_seconds", "c_size_bytes", "c_cpu_utilization_percent",
            "c_http_active", "c_ratio_one", "req_duration_seconds", "temperature_delta_celsius"} <= names
    assert 'otel_scope_schema_url="https://opentelemetry.io/schemas/1.26.0"' in fast
    assert 'otel_scope_scope_attr="v\\"1"' in fast
    assert "temperature_delta_celsius_sum" not in fast  # negative first bucket: no _sum/_count


@fast_or_public
def test_same_output_across_scrapes_with_cache_hits_and_new_series(setup: _Setup) -> None:
    _record_everything(setup)
    counter = setup.alpha.create_counter("later", unit="s")
    hist = setup.alpha.create_histogram("req.duration", unit="s", description="request duration")
    for round_ in range(4):
        counter.add(round_, {"round": str(round_ % 2)})
        hist.record(round_ / 10, {"http.route": "/a", "method": "GET"})
        plain, fast = setup.both()
        assert fast == plain
        assert _families(fast) == _families(plain)


@fast_or_public
def test_only_the_fast_readers_part_is_rendered_by_it_others_in_registry_order(setup: _Setup) -> None:
    class Static:
        def __init__(self, name: str) -> None:
            self.name = name

        def collect(self) -> Iterable[Any]:
            family = GaugeMetricFamily(self.name, "static", labels=["a"])
            family.add_metric(['x"y'], 1)
            yield family

    before, after = Static("before_otel"), Static("after_otel")
    registry = CollectorRegistry()
    registry.register(before)
    reader = FastPrometheusMetricReader(registry=registry)
    registry.register(after)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "s"}))
    try:
        provider.get_meter("m").create_counter("hits").add(2, {"k": "v"})
        registry.set_target_info({"env": "test"})
        text = exposition.generate_latest(registry).decode()
        assert text == generate_latest(registry).decode()
        order = [f.name for f in text_string_to_metric_families(text)]
        assert order == ["target_info", "before_otel", "target_info", "hits", "after_otel"]
    finally:
        provider.shutdown()


@fast_or_public
def test_registry_collect_still_works_and_one_sdk_collection_per_scrape(setup: _Setup) -> None:
    _record_everything(setup)
    calls = []
    inner = setup.fast._collect

    def counting(reader: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return inner(reader, *args, **kwargs)

    setup.fast._set_collect_callback(counting)
    exposition.generate_latest(setup.fast_registry)
    assert len(calls) == 1
    # REGISTRY.collect() readers (dashboard history, alert evaluator) see the collector as before.
    via_registry = generate_latest(setup.fast_registry).decode()
    assert len(calls) == 2
    assert _families(via_registry) == _families(generate_latest(setup.plain_registry).decode())
    assert not setup.fast._collector._metrics_datas  # the scrape's data never leaks into the deque


@fast_or_public
def test_hooked_collect_data_is_rendered(setup: _Setup) -> None:
    """Data merged into the reader's collection (the HTTP layer's lean histogram) is on /metrics."""
    from opentelemetry.sdk.metrics.export import (
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    setup.alpha.create_counter("base").add(1)
    for reader in (setup.plain, setup.fast):
        inner = reader._collect

        def merged(reader_: Any, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            data = _inner(reader_, *args, **kwargs)
            point = NumberDataPoint({"extra": "yes"}, 0, 1, 41)
            metric = Metric("merged.metric", "merged", "1", Sum([point], 2, True))
            rm = data.resource_metrics[0]
            scope = ScopeMetrics(InstrumentationScope("merged.scope", "9"), [metric], "")
            return MetricsData([ResourceMetrics(rm.resource, [*rm.scope_metrics, scope], rm.schema_url)])

        reader._set_collect_callback(merged)
    plain, fast = setup.both()
    assert 'merged_metric_total{extra="yes",otel_scope_name="merged.scope"' in fast
    assert fast == plain


@fast_or_public
def test_label_cache_is_bounded(setup: _Setup) -> None:
    counter = setup.alpha.create_counter("many")
    for i in range(50):
        counter.add(1, {"i": str(i)})
    small = FastPrometheusMetricReader(registry=CollectorRegistry(), max_cached_series=10)
    provider = MeterProvider(metric_readers=[small])
    try:
        many = provider.get_meter("m").create_counter("many")
        for i in range(50):
            many.add(1, {"i": str(i)})
        first = small.render_text()
        assert first == small.render_text()
        assert sum(len(s.points) for s in small._renderer.streams.values()) <= 50
        assert first.count("many_total{") == 50
    finally:
        provider.shutdown()
    # The default reader caches only the last collection's attribute sets: no growth across scrapes.
    setup.both()
    size = sum(len(s.points) for s in setup.fast._renderer.streams.values())
    setup.both()
    assert sum(len(s.points) for s in setup.fast._renderer.streams.values()) == size == 50


@fast_or_public
def test_empty_provider_renders_like_the_exporter(setup: _Setup) -> None:
    plain, fast = setup.both()
    assert fast == plain


def test_number_formatting_matches_prometheus_client() -> None:
    values: list[Any] = [0, 1, -1, 999_999, 1_000_000, 10**15 - 1, -(10**15) + 1, 10**16, 2**63, True,
                         0.1, 1e-7, 1234567.0, float("inf"), float("-inf"), -0.0]
    for v in values:
        assert exposition._num(v) == floatToGoString(v), v


@fast_or_public
def test_process_metrics_route_serves_the_fast_renderer(process_telemetry: Any) -> None:
    assert isinstance(process_telemetry.prometheus_reader, FastPrometheusMetricReader)
    fast = _families(exposition.generate_latest(REGISTRY).decode())
    plain = _families(generate_latest(REGISTRY).decode())
    # Values of process and observable gauges move between the two collections; the series don't.
    assert [(f[0], f[1], f[2], [(s[0], s[1]) for s in f[4]]) for f in fast] == \
        [(f[0], f[1], f[2], [(s[0], s[1]) for s in f[4]]) for f in plain]
