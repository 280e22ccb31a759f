"""The Prometheus reader's light aggregations: the same values as the SDK's, cheaper, and only there."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sizewise_otel.fastpath import exposition
from sizewise_otel.fastpath.collection import LightDefaultAggregation, LightPoint, install, probe
from sizewise_otel.fastpath.exposition import FastPrometheusMetricReader
from tests.unit.test_fastpath_exposition import fast_or_public


def _points(reader: Any) -> dict[str, list[Any]]:
    data = reader.get_metrics_data() if hasattr(reader, "get_metrics_data") else None
    if data is None:  # the fast reader: one collection through render_text's protocol
        box: list[Any] = []
        reader._capture.box = box
        try:
            reader.collect()
        finally:
            reader._capture.box = None
        data = box[0]
    return {m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


@fast_or_public
def test_the_reader_creates_light_default_aggregations_for_every_instrument_kind() -> None:
    fast = FastPrometheusMetricReader(registry=CollectorRegistry())
    assert {type(a) for a in fast._instrument_class_aggregation.values()} == {LightDefaultAggregation}
    assert install(object()) is False  # not a reader: nothing to change, and it says so
    assert probe()


@fast_or_public
def test_only_the_prometheus_reader_is_light_the_others_keep_exemplars() -> None:
    fast = FastPrometheusMetricReader(registry=CollectorRegistry())
    other = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[fast, other], exemplar_filter=AlwaysOnExemplarFilter())
    try:
        meter = provider.get_meter("m")
        meter.create_counter("c").add(2, {"k": "v"})
        meter.create_gauge("g").set(1.5, {"k": "v"})
        meter.create_histogram("h").record(0.3, {"k": "v"})
        theirs, ours = _points(other), _points(fast)
        assert [type(p) for p in theirs["c"] + theirs["g"]] == [NumberDataPoint, NumberDataPoint]
        assert all(p.exemplars for p in theirs["c"] + theirs["g"] + theirs["h"])  # AlwaysOn: one each
        assert [(type(p), p.value, p.exemplars) for p in ours["c"] + ours["g"]] == \
            [(LightPoint, 2, ()), (LightPoint, 1.5, ())]
        assert type(ours["h"][0]).__name__ == "HistogramDataPoint"  # histograms keep the SDK's code
    finally:
        provider.shutdown()


@fast_or_public
def test_unchanged_sum_returns_its_last_point_changed_sum_a_new_one() -> None:
    fast = FastPrometheusMetricReader(registry=CollectorRegistry())
    provider = MeterProvider(metric_readers=[fast])
    try:
        counter = provider.get_meter("m").create_counter("c")
        counter.add(3, {"k": "v"})
        first = _points(fast)["c"][0]
        again = _points(fast)["c"][0]
        assert again is first and again.value == 3
        counter.add(0.5, {"k": "v"})
        changed = _points(fast)["c"][0]
        assert changed is not first and changed.value == 3.5
        assert _points(fast)["c"][0] is changed
    finally:
        provider.shutdown()


@fast_or_public
def test_random_traffic_renders_byte_for_byte_like_the_sdk_reader_on_every_scrape() -> None:
    rng = random.Random(20)
    plain_registry, fast_registry = CollectorRegistry(), CollectorRegistry()
    plain = exposition.PrometheusMetricReader(registry=plain_registry)
    fast = FastPrometheusMetricReader(registry=fast_registry)
    provider = MeterProvider(metric_readers=[plain, fast], resource=Resource.create({"service.name": "r"}))
    try:
        meter = provider.get_meter("random", "1")
        counters = [meter.create_counter(f"c{i}", unit="s") for i in range(3)]
        updowns = [meter.create_up_down_counter(f"u{i}") for i in range(2)]
        gauge = meter.create_gauge("g", unit="%")
        observed = {"a": 1.0}

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {"k": k}) for k, v in observed.items()]

        meter.create_observable_counter("oc", [observe])
        meter.create_observable_gauge("og", [observe])
        for scrape in range(40):
            for _ in range(rng.randrange(0, 60)):
                attrs = {"series": str(rng.randrange(40)), "kind": rng.choice(["a", 'b"\\'])}
                value = rng.choice([1, 2, 10**6, 0.25, 1e-9, 0])
                rng.choice(counters).add(value, attrs)
                rng.choice(updowns).add(-value if rng.random() < 0.5 else value, attrs)
                if rng.random() < 0.3:
                    gauge.set(rng.choice([1, 1.0, -0.0, 2.5, 10**16]), attrs)
            if scrape % 7 == 3:
                observed[f"k{scrape}"] = observed["a"] = observed["a"] + scrape
            text = exposition.generate_latest(fast_registry).decode()
            assert text == generate_latest(plain_registry).decode(), scrape
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert len(families["c0_seconds"].samples) > 20 and len(families["og"].samples) >= 5
    finally:
        provider.shutdown()


@fast_or_public
def test_concurrent_adds_during_scrapes_are_never_lost_nor_counted_twice() -> None:
    fast = FastPrometheusMetricReader(registry=CollectorRegistry())
    provider = MeterProvider(metric_readers=[fast])
    try:
        counter = provider.get_meter("m").create_counter("hits")
        counter.add(0, {"k": "v"})
        threads, per_thread, stop = 3, 5_000, threading.Event()

        def add() -> None:
            for _ in range(per_thread):
                counter.add(1, {"k": "v"})

        seen: list[float] = []

        def scrape() -> None:
            while not stop.is_set():
                for line in fast.render_text().splitlines():
                    if line.startswith("hits_total{"):
                        seen.append(float(line.rsplit(" ", 1)[1]))

        scraper = threading.Thread(target=scrape)
        adders = [threading.Thread(target=add) for _ in range(threads)]
        scraper.start()
        for t in adders:
            t.start()
        for t in adders:
            t.join()
        stop.set()
        scraper.join()
        assert len(seen) >= 2
        assert seen == sorted(seen)  # a cumulative counter never goes back
        final = [line for line in fast.render_text().splitlines() if line.startswith("hits_total{")]
        assert len(final) == 1 and final[0].endswith(f" {float(threads * per_thread)}")
    finally:
        provider.shutdown()
