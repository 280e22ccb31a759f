"""HTTP/DB duration boundaries: the semconv-advised ones by default, finer only by opt-in (issue 19)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sizewise_otel.instruments.buckets import FINE_BUCKETS_ENV, histogram_buckets
from sizewise_otel.instruments.http_server import duration_buckets
from sizewise_otel.settings import SettingsError
from sizewise_otel.telemetry import build_views
from tests.semconv_tables import ADVISED_BUCKETS

DURATIONS = ("http.server.request.duration", "http.client.request.duration", "db.client.operation.duration")


def _exported_bounds(name: str) -> list[float]:
    """What an SDK instrument exports under build_views() (the OTLP and /metrics boundaries)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=build_views())
    provider.get_meter("t").create_histogram(name, unit="s").record(0.0003, {})
    data = reader.get_metrics_data()
    provider.shutdown()
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == name for p in m.data.data_points]
    assert len(points) == 1
    return list(points[0].explicit_bounds)


@pytest.mark.parametrize("name", DURATIONS)
def test_default_boundaries_are_the_advised_ones(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FINE_BUCKETS_ENV, raising=False)
    assert histogram_buckets(name) == tuple(float(b) for b in ADVISED_BUCKETS[name])
    assert _exported_bounds(name) == [float(b) for b in ADVISED_BUCKETS[name]]


@pytest.mark.parametrize("name", DURATIONS)
def test_fine_opt_in_adds_sub_5ms_boundaries_and_keeps_every_advised_one(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINE_BUCKETS_ENV, "true")
    fine = histogram_buckets(name)
    assert set(ADVISED_BUCKETS[name]) < set(fine)  # an le="0.5" SLO query still works
    assert list(fine) == sorted(fine)
    assert {0.0005, 0.0025} <= set(fine)
    assert _exported_bounds(name) == list(fine)


def test_lean_http_histogram_follows_the_same_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FINE_BUCKETS_ENV, raising=False)
    assert duration_buckets() == histogram_buckets("http.server.request.duration", fine=False)
    monkeypatch.setenv(FINE_BUCKETS_ENV, "1")
    assert duration_buckets() == histogram_buckets("http.server.request.duration", fine=True)
    assert 0.001 in duration_buckets()


def test_other_histograms_ignore_the_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINE_BUCKETS_ENV, "true")
    assert histogram_buckets("sizewise.cache.operation.duration") == \
        histogram_buckets("sizewise.cache.operation.duration", fine=False)


def test_an_invalid_value_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINE_BUCKETS_ENV, "maybe")
    with pytest.raises(SettingsError, match=FINE_BUCKETS_ENV):
        histogram_buckets("db.client.operation.duration")


@pytest.mark.parametrize("fine", [False, True])
def test_lean_db_recorder_exports_what_the_view_would(fine: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from sizewise_otel.fastpath import Recorder, enabled
    from tests.unit.test_instruments_sql import TelemetryRig

    monkeypatch.setenv(FINE_BUCKETS_ENV, "true" if fine else "false")
    rig = TelemetryRig()
    recorder = Recorder(rig, "db.client.operation.duration", ("t", "1", None))
    # The fast path's own histogram where the SDK allows it (not on the floor versions): the SDK view otherwise.
    assert (recorder.lean is not None) == enabled()
    recorder.record(recorder.bind({"db.system.name": "sqlite"}), 0.0003)
    (point,) = rig.metrics()["db.client.operation.duration"]
    assert list(point.explicit_bounds) == list(histogram_buckets("db.client.operation.duration", fine=fine))
    assert (0.00025 in point.explicit_bounds) is fine
