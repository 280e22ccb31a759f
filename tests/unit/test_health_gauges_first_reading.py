"""The health gauges before the first check has finished: no reading is held for the tier.

An observable's reading is cached for its tier (sizewise.health.check.duration: 30 s). Had the
first collection, before any check ran, cached its empty list, the series would stay missing for
30 s after start (``sizewise-otel validate`` reported it missing on a fresh demo).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sizewise_otel import telemetry as telemetry_module
from sizewise_otel.health import monitor as monitor_module
from sizewise_otel.health.model import Status
from sizewise_otel.telemetry import Telemetry


class _Weakrefable(SimpleNamespace):
    """A namespace that can be weakly referenced and hashed by identity (as Telemetry and HealthMonitor)."""

    __hash__ = object.__hash__


def _series(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, str], float]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [(dict(p.attributes), p.value) for p in m.data.data_points]
    return out


def test_series_appear_as_soon_as_a_check_has_run(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(telemetry_module.time, "monotonic", lambda: now[0])
    reader = InMemoryMetricReader()
    fake = _Weakrefable(_lock=threading.Lock(), _observed=set(),
                          meter=MeterProvider(metric_readers=[reader]).get_meter("t"))
    fake.observe = lambda name, cb: Telemetry.observe(fake, name, cb)  # type: ignore[arg-type]
    results: dict[str, object] = {}
    monitor = _Weakrefable(telemetry=fake, runner=SimpleNamespace(results=results))  # weakly referenced
    monkeypatch.setattr(monitor_module, "_live", {})
    monitor_module._register_gauges(monitor)  # type: ignore[arg-type]

    before = _series(reader)
    assert "sizewise.health.check.duration" not in before and "sizewise.health.status" not in before

    results["database"] = SimpleNamespace(name="database", status=Status.CRITICAL, duration_s=0.25)
    now[0] += 1  # well inside both tiers (5 s and 30 s)
    after = _series(reader)
    assert after["sizewise.health.check.duration"] == [({"sizewise.health.check": "database"}, 0.25)]
    assert sorted((a["sizewise.health.state"], v) for a, v in after["sizewise.health.status"]) == [
        ("critical", 1.0), ("healthy", 0.0), ("warning", 0.0)]
