"""History bounds and the uptime arithmetic."""

from __future__ import annotations

import pytest

from sizewise_otel.health.history import MAX_TRANSITIONS, MINUTE_BUCKETS, CheckHistory
from sizewise_otel.health.model import Status

T0 = 1_800_000_000.0  # a round epoch (minute and hour aligned)


def test_uptime_is_time_weighted() -> None:
    h = CheckHistory("db", 168, max_gap=60)
    # healthy for 30 min (runs every 10 s), then critical for 10 min, then healthy again
    t = T0
    for _ in range(180):
        h.record(Status.HEALTHY, t)
        t += 10
    for _ in range(60):
        h.record(Status.CRITICAL, t, reason="error")
        t += 10
    h.record(Status.HEALTHY, t)
    now = t
    # observed: 1800 s healthy + 600 s critical = 2400 s, all inside the hour
    assert h.uptime(3600, now) == pytest.approx(1800 / 2400)
    assert h.uptime(86400, now) == pytest.approx(1800 / 2400)
    assert [(x.previous, x.current) for x in h.transitions] == [
        (None, "healthy"), ("healthy", "critical"), ("critical", "healthy")]


def test_warning_counts_as_up_and_open_interval_counts() -> None:
    h = CheckHistory("redis", 24, max_gap=60)
    h.record(Status.WARNING, T0)
    h.record(Status.CRITICAL, T0 + 30)
    # 30 s warning (up), then 30 s critical until now
    assert h.uptime(3600, T0 + 60) == pytest.approx(0.5)


def test_unobserved_gaps_do_not_count() -> None:
    h = CheckHistory("x", 24, max_gap=20)
    h.record(Status.CRITICAL, T0)
    h.record(Status.HEALTHY, T0 + 1000)  # the monitor was not running: only 20 s count as critical
    h.record(Status.HEALTHY, T0 + 1020)
    assert h.uptime(3600, T0 + 1020) == pytest.approx(20 / 40)


def test_window_excludes_old_buckets() -> None:
    h = CheckHistory("x", 48, max_gap=60)
    t = T0
    for _ in range(60):  # one hour critical
        h.record(Status.CRITICAL, t)
        t += 60
    for _ in range(120):  # two hours healthy
        h.record(Status.HEALTHY, t)
        t += 60
    assert h.uptime(3600, t) == pytest.approx(1.0, abs=0.02)
    assert h.uptime(86400, t) == pytest.approx(2 / 3, abs=0.02)


def test_no_observation_is_none_and_single_sample_is_its_status() -> None:
    h = CheckHistory("x", 1)
    assert h.uptime(3600, T0) is None
    h.record(Status.CRITICAL, T0)
    assert h.uptime(3600, T0) == 0.0


def test_memory_is_bounded() -> None:
    h = CheckHistory("flappy", 168, max_gap=60)
    t = T0
    for i in range(3 * 24 * 60 * 2):  # three days, a run every 30 s, flapping on every run
        h.record(Status.CRITICAL if i % 2 else Status.HEALTHY, t)
        t += 30
    assert len(h.transitions) == MAX_TRANSITIONS
    assert len(h.minutes.data) == MINUTE_BUCKETS
    assert len(h.hours.data) == 72
    assert h.uptime(86400, t) == pytest.approx(0.5, abs=0.01)
    # transitions older than the retention are not reported
    short = CheckHistory("s", 1, max_gap=60)
    short.record(Status.HEALTHY, T0)
    short.record(Status.CRITICAL, T0 + 7200)
    assert [x.current for x in short.recent_transitions(T0 + 7200)] == ["critical"]


def test_trend_lists_recent_minutes() -> None:
    h = CheckHistory("x", 24, max_gap=60)
    for i in range(5):
        h.record(Status.HEALTHY, T0 + i * 60)
    trend = h.trend(T0 + 4 * 60, minutes=3)
    assert [b["start"] for b in trend] == [T0 + 120, T0 + 180, T0 + 240]
    assert all(b["runs"] == 1 for b in trend)
