"""The tracker's capture path: ids, never raising, never blocking, OTel, alerts, hooks, logging."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sizewise_otel.errors import ErrorContext, ErrorSeverity, ErrorTracker, ErrorTrackingHandler
from sizewise_otel.telemetry import get_telemetry
from tests.servers import free_port
from tests.unit.test_errors_helpers import (
    NEEDLES,
    PII,
    leaked,
    metric_value,
    pii_message,
    span_exporter,
    spans_text,
    test_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tracker(tmp_path: Path):
    settings = test_settings(f"sqlite:///{tmp_path / 'errors.db'}")
    t = ErrorTracker(settings, get_telemetry(settings))
    asyncio.run(t.initialize())
    yield t
    asyncio.run(t.shutdown())


def _boom(n: int) -> None:
    raise ValueError(f"boom {n} for bob{n}@example.com")


def _err(n: int = 1) -> BaseException:
    try:
        _boom(n)
    except ValueError as exc:
        return exc
    raise AssertionError


def test_capture_returns_id_and_groups(tracker: ErrorTracker) -> None:
    ids = [tracker.capture_error(_err(i), ErrorContext(user_id=f"u{i % 3}", endpoint="/x", method="GET"))
           for i in range(20)]
    assert len(set(ids)) == 20
    assert tracker.flush(10)
    groups, _ = tracker.store.list_groups()
    assert len(groups) == 1 and groups[0]["count"] == 20 and groups[0]["users"] == 3
    event = tracker.store.get_event(ids[-1])
    assert event["message"] == "boom 19 for [email]"
    assert groups[0]["title"] == "ValueError: boom <int> for [email]"


def test_capture_never_raises(tracker: ErrorTracker) -> None:
    class Evil(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert tracker.capture_error(Evil())
    assert tracker.capture_error(None, None)
    assert tracker.capture_error(_err(), ErrorContext(extra={"x": object(), "deep": {"a": {"b": {"c": [1]}}}}),
                                 severity="nonsense", fingerprint=["{{default}}", "x"])
    assert tracker.capture_error(_err(), severity=ErrorSeverity.CRITICAL)
    assert tracker.flush(10)


def test_custom_fingerprint_extends_default(tracker: ErrorTracker) -> None:
    a = tracker.capture_error(_err(1), fingerprint=["{{default}}", "tenant-a"])
    b = tracker.capture_error(_err(2), fingerprint=["{{default}}", "tenant-b"])
    c = tracker.capture_error(_err(3), fingerprint=["{{default}}", "tenant-a"])
    tracker.flush(10)
    ga, gb, gc = (tracker.store.get_event(i)["group_id"] for i in (a, b, c))
    assert ga == gc != gb


def test_metrics_and_type_cap(tracker: ErrorTracker) -> None:
    before = generate_latest(REGISTRY).decode()
    tracker.capture_error(_err(), severity="high")
    for i in range(250):
        exc_type = type(f"Gen{i}Error", (Exception,), {})
        tracker.capture_error(exc_type("x"))
    assert tracker.flush(20)  # counted by the writer as captures leave the queue
    after = generate_latest(REGISTRY).decode()
    delta = (metric_value(after, "sizewise_errors_total", error_type="ValueError", sizewise_error_severity="high")
             - metric_value(before, "sizewise_errors_total", error_type="ValueError", sizewise_error_severity="high"))
    assert delta == 1
    assert len(tracker._types) <= 200
    assert metric_value(after, "sizewise_errors_total", error_type="other") >= 50


def test_span_event_on_current_span(tracker: ErrorTracker) -> None:
    exporter = span_exporter()
    exporter.clear()
    parent = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1)))
    tracer = get_telemetry().tracer
    with tracer.start_as_current_span("job", context=set_span_in_context(parent)):
        try:
            raise RuntimeError(pii_message(3))
        except RuntimeError as exc:
            error_id = tracker.capture_error(exc)
            trace.get_current_span().set_attribute("user.email", PII["email"])
    spans = [s for s in exporter.get_finished_spans() if s.name == "job"]
    assert len(spans) == 1
    span = spans[0]
    assert span.status.status_code.name == "ERROR"
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1
    attrs = events[0].attributes
    assert attrs["exception.type"] == "RuntimeError"
    assert attrs["sizewise.error.id"] == error_id
    assert "[email]" in attrs["exception.message"] and "Traceback" in attrs["exception.stacktrace"]
    assert leaked(spans_text(spans)) == []
    tracker.flush(10)
    assert tracker.store.get_event(error_id)["trace_id"] == f"{0x1234:032x}"


def test_alert_listener_new_group_and_regression(tracker: ErrorTracker) -> None:
    got: list[dict] = []
    tracker.add_alert_listener(got.append)
    eid = tracker.capture_error(_err())
    tracker.flush(10)
    gid = tracker.store.get_event(eid)["group_id"]
    tracker.store.set_status(gid, "resolved")
    tracker.capture_error(_err())
    tracker.flush(10)
    kinds = [(e["kind"], e.get("group_id")) for e in got]
    assert ("new_group", gid) in kinds and ("regression", gid) in kinds
    assert all(not leaked(repr(e)) for e in got)


def test_spike_signal_per_group_with_cooldown(tracker: ErrorTracker) -> None:
    got: list[dict] = []
    tracker.add_alert_listener(got.append)
    tracker.alerts.clock = lambda: 1_800_000_010.0  # 10 s into a minute: the window holds all 60
    ids = []
    for i in range(60):
        ids.append(tracker.capture_error(_err(i), severity="critical"))
        if i % 20 == 0:
            tracker.flush(10)
    tracker.flush(10)
    group = tracker.store.get_event(ids[-1])["group_id"]
    spikes = [e for e in got if e["kind"] == "spike"]
    assert [e["group_id"] for e in spikes] == [group]  # one group; the cooldown holds back the repeats
    assert spikes[0]["per_minute"] >= 20 and spikes[0]["baseline_per_minute"] == 0


def test_queue_full_capture_returns_within_1ms(tmp_path: Path) -> None:
    # A store that is gone (nothing listens) and a writer retrying: the small queue fills up.
    settings = test_settings(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone",
                             error_queue_size=10)
    t = ErrorTracker(settings, get_telemetry(settings))
    t.writer.retry_seconds = 120
    asyncio.run(t.initialize())
    try:
        deadline = time.monotonic() + 5
        while t.writer.depth < 10 and time.monotonic() < deadline:
            t.capture_error(_err(1))
            time.sleep(0.01)
        assert t.writer.depth == 10
        dropped_before = t.dropped["queue_full"]
        before = generate_latest(REGISTRY).decode()
        exc = _err(7)
        ctx = ErrorContext(user_id="u1", endpoint="/calc/{id}", method="POST", extra={"password": "x"})
        wall, cpu = [], []
        # As in production (SIZEWISE_GC_FREEZE, runtime/heap.py): the start-up heap is frozen, so a full
        # collection that happens to fall in the loop does not walk pytest's whole heap (~300 ms here).
        gc.collect()
        gc.freeze()
        try:
            for _ in range(2000):
                c0, t0 = time.thread_time(), time.perf_counter()
                t.capture_error(exc, ctx)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
        finally:
            gc.unfreeze()
        after = generate_latest(REGISTRY).decode()
        wall.sort()
        cpu.sort()
        # Wall time includes the scheduler (CI machines are shared): the median and the 90th percentile
        # must be under 1 ms and nothing may wait like a blocked call would; the work itself (thread CPU
        # time) must be under 1 ms at the 99th percentile.
        p50, p90 = statistics.median(wall), wall[int(len(wall) * 0.90)]
        cpu99 = cpu[int(len(cpu) * 0.99)]
        assert p50 < 0.0005, f"wall p50 {p50 * 1e6:.0f} us"
        assert p90 < 0.001, f"wall p90 {p90 * 1e6:.0f} us"
        assert cpu99 < 0.001, f"cpu p99 {cpu99 * 1e6:.0f} us"
        assert wall[-1] < 0.1, f"wall max {wall[-1] * 1e6:.0f} us"
        assert t.dropped["queue_full"] - dropped_before == 2000
        assert metric_value(after, "sizewise_errors_dropped_total", sizewise_error_drop_reason="queue_full") \
            - metric_value(before, "sizewise_errors_dropped_total", sizewise_error_drop_reason="queue_full") == 2000
    finally:
        t0 = time.monotonic()
        asyncio.run(t.shutdown())
        assert time.monotonic() - t0 < 8


def test_store_unavailable_is_counted_and_recovers_nothing_raises(tmp_path: Path) -> None:
    settings = test_settings(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    t = ErrorTracker(settings, get_telemetry(settings))
    t.writer.retry_seconds = 0.3
    asyncio.run(t.initialize())
    try:
        for i in range(5):
            t.capture_error(_err(i))
        assert t.flush(15)
        assert t.dropped["store_unavailable"] == 5
        assert t.writer.store_ok is False
    finally:
        asyncio.run(t.shutdown())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_logging_handler_and_thread_hook(tracker: ErrorTracker) -> None:
    logger = logging.getLogger("hvac.jobs")
    handler = ErrorTrackingHandler(tracker)
    logger.addHandler(handler)
    try:
        try:
            _boom(5)
        except ValueError:
            logger.exception("job failed for %s", PII["email"])
        logger.error("no exception here")  # not captured: capture_messages is off
    finally:
        logger.removeHandler(handler)

    def worker() -> None:
        raise ConnectionError("backend 10.0.0.5 unreachable")

    th = threading.Thread(target=worker)
    th.start()
    th.join()

    @tracker.watch
    def job() -> None:
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        job()
    tracker.flush(10)
    groups, _ = tracker.store.list_groups()
    types = {g["type"] for g in groups}
    assert {"ValueError", "ConnectionError", "TimeoutError"} <= types
    assert not leaked(repr(groups))


def test_log_scrubbing_filter_on_server_loggers(tracker: ErrorTracker, caplog: pytest.LogCaptureFixture) -> None:
    server_log = logging.getLogger("uvicorn.error")
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        try:
            raise RuntimeError(pii_message(9))
        except RuntimeError:
            server_log.exception("Exception in ASGI application for %s", PII["email"])
    text = caplog.text
    assert "Exception in ASGI application" in text and "RuntimeError" in text
    assert leaked(text) == []


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import asyncio
        from sizewise_otel.ErrorTracker import initialize_error_tracker, get_error_tracker, ErrorContext

        async def initialize_monitoring():
            error_tracker = initialize_error_tracker()
            await error_tracker.initialize()

        asyncio.run(initialize_monitoring())

        try:
            raise ValueError("calculation failed")
        except Exception as e:
            tracker = get_error_tracker()
            error_id = tracker.capture_error(
                exception=e,
                context=ErrorContext(
                    user_id="user123",
                    endpoint="/api/hvac/calculate",
                    method="POST"
                )
            )
            print(f"Error captured: {error_id}")
        assert tracker.flush(10)
        print("stored:", tracker.store.get_event(error_id)["group_id"])
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIZEWISE_API_KEYS": ""}
    env.pop("ERROR_STORE_URL", None)
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Error captured: " in out.stdout and "stored: " in out.stdout
    assert (tmp_path / "sizewise-errors.db").exists()


def test_needles_are_distinct() -> None:
    assert len(set(NEEDLES)) == len(NEEDLES)


def test_counters_with_known_labels_start_at_zero(tmp_path: Path) -> None:
    """A fresh process: sizewise_error_groups_new_total is exported at 0 for the 4 severities before any
    error, so Prometheus' increase() counts the first new group (a series born at 1 has no earlier
    sample to step from); the first group then reads 1."""
    script = textwrap.dedent(f"""
        import asyncio
        from prometheus_client import REGISTRY, generate_latest
        from sizewise_otel.errors import ErrorTracker
        from sizewise_otel.telemetry import get_telemetry
        from tests.unit.test_errors_helpers import test_settings
        settings = test_settings("sqlite:///{tmp_path / 'errors.db'}")
        t = ErrorTracker(settings, get_telemetry(settings))
        asyncio.run(t.initialize())
        open("{tmp_path / 'before.txt'}", "wb").write(generate_latest(REGISTRY))
        try:
            raise KeyError("first")
        except KeyError as exc:
            t.capture_error(exc, severity="high")
        assert t.flush(20)
        open("{tmp_path / 'after.txt'}", "wb").write(generate_latest(REGISTRY))
        asyncio.run(t.shutdown())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    before, after = (tmp_path / "before.txt").read_text(), (tmp_path / "after.txt").read_text()

    def series(text: str, name: str, label: str) -> dict[str, float]:
        return {s.labels[label]: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == name}

    assert series(before, "sizewise_error_groups_new_total", "sizewise_error_severity") == \
        {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert series(after, "sizewise_error_groups_new_total", "sizewise_error_severity") == \
        {"low": 0, "medium": 0, "high": 1, "critical": 0}
