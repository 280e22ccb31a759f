"""Collection tiers (5 s / 30 s / 5 min) and the per-mount disk signal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

from sizewise_otel import telemetry as telemetry_module
from sizewise_otel.catalog import OBSERVABLE_KINDS, SIGNALS, Kind, Tier, signal
from sizewise_otel.health.checks import system_checks
from sizewise_otel.health.model import Status
from sizewise_otel.instruments.system import SystemMetrics, data_paths_from_env, mountpoint_of
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import Telemetry

OBSERVABLE = OBSERVABLE_KINDS


def test_every_observable_has_one_tier_and_every_tier_is_used() -> None:
    tiers: dict[Tier, list[str]] = {}
    for s in SIGNALS:
        if s.kind in OBSERVABLE:
            assert isinstance(s.tier, Tier), s.name
            tiers.setdefault(s.tier, []).append(s.name)
        else:  # recorded as events happen: nothing to poll, so no tier
            assert s.tier is None, s.name
    assert [int(t) for t in sorted(tiers)] == [5, 30, 300]
    assert "sizewise.cache.redis.memory.used" in tiers[Tier.MEDIUM]
    assert "sizewise.disk.usage" in tiers[Tier.SLOW]
    assert {"sizewise.cpu.usage", "sizewise.memory.usage", "sizewise.health.status"} <= set(tiers[Tier.FAST])


class _FakeTelemetry(SimpleNamespace):
    """Telemetry's state for its observe (a subclass, so it can be weakly referenced)."""

    __hash__ = object.__hash__  # as Telemetry's: registrations are remembered per instance


@pytest.mark.parametrize("name", ["sizewise.cpu.usage", "process.memory.usage", "sizewise.disk.usage",
                                  "container.memory.working_set"])
def test_observe_evaluates_a_callback_once_per_its_tier(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(telemetry_module.time, "monotonic", lambda: now[0])
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    fake = _FakeTelemetry(_lock=threading.Lock(), _observed=set(), meter=provider.get_meter("t"))
    fake.observe = lambda n, cb: Telemetry.observe(fake, n, cb)  # type: ignore[arg-type]
    calls: list[float] = []

    def callback() -> list[tuple[float, dict[str, str]]]:
        calls.append(now[0])
        return [(float(len(calls)), {})]

    fake.observe(name, callback)
    fake.observe(name, callback)  # a second registration adds nothing
    tier = float(signal(name).tier or 0)
    data = reader.get_metrics_data()
    (metric,) = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    # semconv's kind: levels it registers as UpDownCounters are non-monotonic sums, gauges stay gauges
    expected = Sum if signal(name).kind is Kind.OBSERVABLE_UP_DOWN_COUNTER else Gauge
    assert (metric.name, metric.unit, type(metric.data)) == (name, signal(name).unit, expected)
    assert not isinstance(metric.data, Sum) or metric.data.is_monotonic is False
    now[0] += tier - 1
    reader.get_metrics_data()
    assert len(calls) == 1
    now[0] += 1
    reader.get_metrics_data()
    assert len(calls) == 2


# --- disk: every real mount of the data paths -------------------------------------------------

def df_mountpoint(path: str) -> str:
    """The oracle: coreutils' df names the mount holding a path."""
    out = subprocess.run(["df", "--output=target", path], check=True, capture_output=True, text=True).stdout
    return out.splitlines()[-1].strip()


@pytest.fixture
def data_dirs(tmp_path: Path) -> list[str]:
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else tmp_path
    other = Path(tempfile.mkdtemp(prefix="sizewise-tiers-", dir=shm))
    (tmp_path / "db").mkdir()
    (tmp_path / "logs").mkdir()
    yield [str(tmp_path / "db"), str(tmp_path / "logs"), str(other), str(tmp_path / "not-yet" / "created")]
    other.rmdir()


def test_disk_reports_each_distinct_mount_by_its_real_mountpoint(data_dirs: list[str]) -> None:
    system = SystemMetrics(data_paths=data_dirs)
    readings = system.disk()
    by_mount = {attrs["system.filesystem.mountpoint"]: value for value, attrs in readings}
    existing = [p for p in data_dirs if os.path.exists(p)]
    expected = {df_mountpoint(p) for p in existing}
    assert set(by_mount) == expected
    assert len(readings) == len(expected)  # two paths on one filesystem: one series
    assert "data" not in by_mount
    for mountpoint, value in by_mount.items():
        assert 0.0 <= value <= 100.0, (mountpoint, value)
    # A path that does not exist yet counts where its files would land: its nearest existing parent.
    assert mountpoint_of(data_dirs[3])[0] == df_mountpoint(str(Path(data_dirs[3]).parent.parent))
    print(f"\nmounts of {len(data_dirs)} data paths: {sorted(by_mount)}")


def test_disk_reading_matches_statvfs(data_dirs: list[str]) -> None:
    import psutil

    system = SystemMetrics(data_paths=data_dirs[:1])
    [(value, attrs)] = system.disk()
    assert attrs == {"system.filesystem.mountpoint": df_mountpoint(data_dirs[0])}
    assert abs(value - psutil.disk_usage(data_dirs[0]).percent) < 1.0


def test_data_paths_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEWISE_DATA_PATHS", "/var/lib/sizewise:/var/log/sizewise, /srv/uploads")
    assert data_paths_from_env() == ["/var/lib/sizewise", "/var/log/sizewise", "/srv/uploads"]
    assert SystemMetrics().data_paths == ["/var/lib/sizewise", "/var/log/sizewise", "/srv/uploads"]
    monkeypatch.delenv("SIZEWISE_DATA_PATHS")
    assert data_paths_from_env() == ["."]


def test_disk_health_check_judges_the_fullest_mount() -> None:
    class Fake:
        def cpu(self) -> list[tuple[float, dict[str, Any]]]:
            return [(1.0, {"sizewise.usage.source": "host"})]

        memory = cpu

        def disk(self) -> list[tuple[float, dict[str, Any]]]:
            return [(40.0, {"system.filesystem.mountpoint": "/"}), (96.0, {"system.filesystem.mountpoint": "/data"})]

    settings = load_settings()
    [disk] = [c for c in system_checks(settings, Fake()) if c.name == "disk"]
    outcome = disk.fn()
    outcome = asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome
    assert outcome.status is Status.CRITICAL
    assert "/data" in outcome.message and outcome.details["readings"] == {"/": 40.0, "/data": 96.0}
