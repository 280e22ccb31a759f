"""Error tracker benchmark: capture_error cost on the request path, and sustained events/s into the store.

    python bench/bench_errors.py                      # SQLite file in a temp dir
    python bench/bench_errors.py --postgres URL       # also PostgreSQL (postgresql+psycopg://...)
    python bench/bench_errors.py --quick              # 1,000 calls per mode (CI smoke)

Prints the capture cost on the request path (median, p90, p99, mean; wall and thread CPU time)
against a bare baseline (raising and catching the same exception): without a span, inside a
recording span, inside a sampled-out span, and with the queue full; then the per-event work deferred
to the writer thread, and events per second drained by the writer thread into the store.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from sizewise_otel.errors import ErrorContext, ErrorTracker
from sizewise_otel.errors.context import ErrorEvent
from sizewise_otel.errors.spans import install_span_scrubber
from sizewise_otel.errors.tracker import top_up_error_ids
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import get_telemetry


def site(i: int) -> None:
    raise ValueError(f"duct {i} too small for user{i}@example.com: {i * 1.5} cfm")


def other_site(i: int) -> None:
    raise KeyError(f"room {i} missing")


def make_exc(i: int) -> BaseException:
    try:
        (site if i % 2 else other_site)(i)
    except Exception as exc:
        return exc
    raise AssertionError


def tracker_for(url: str, queue_size: int) -> ErrorTracker:
    settings = load_settings(error_store_url=url, error_queue_size=queue_size)
    return ErrorTracker(settings, get_telemetry(settings))


def paused(t: ErrorTracker) -> ErrorTracker:
    """Nothing drains the queue: measure the caller's side only (the writer's work is measured below)."""
    t.writer.start = lambda: None  # type: ignore[method-assign]
    t.writer._thread = object()  # type: ignore[assignment]
    return t


def unpause(t: ErrorTracker) -> None:
    t.writer._thread = None


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    mean = statistics.fmean(samples) * 1e6
    return (f"p50 {pct(samples, 0.5) * 1e6:7.1f} us  p90 {pct(samples, 0.9) * 1e6:7.1f} us  "
            f"p99 {pct(samples, 0.99) * 1e6:7.1f} us  mean {mean:7.1f} us")


def bench_capture(url: str, n: int) -> dict[str, float]:
    """capture_error on the request path, modes interleaved in chunks so machine noise hits all alike.

    Modes: no current span; a recording (sampled) span; a sampled-out span; the queue full. Wall time
    (perf_counter_ns) and the thread's CPU time (thread_time_ns, immune to the scheduler).
    """
    ctx = ErrorContext(user_id="u1", endpoint="/api/hvac/duct/{duct_id}", method="POST",
                       extra={"password": "x", "duct": {"w": 12, "h": 8}})
    provider = TracerProvider(sampler=ALWAYS_ON)
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    t = paused(tracker_for(url, queue_size=n * 4 + 10))
    full = paused(tracker_for(url, queue_size=10))
    for i in range(10):
        full.capture_error(make_exc(i))
    install_span_scrubber(provider, t.scrubber)  # as in production: spans are scrubbed at end
    tracer, off_tracer = provider.get_tracer("bench"), sampled_out.get_tracer("bench")
    excs = [make_exc(i) for i in range(64)]

    def baseline(i: int) -> tuple[int, int]:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        make_exc(i)
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    def plain(i: int) -> tuple[int, int]:
        exc = excs[i % 64]
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        t.capture_error(exc, ctx)
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    def recording(i: int) -> tuple[int, int]:
        exc = excs[i % 64]
        with tracer.start_as_current_span("req"):
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            t.capture_error(exc, ctx)
            return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    def not_sampled(i: int) -> tuple[int, int]:
        exc = excs[i % 64]
        with off_tracer.start_as_current_span("req"):
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            t.capture_error(exc, ctx)
            return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    def queue_full(i: int) -> tuple[int, int]:
        exc = excs[i % 64]
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        full.capture_error(exc, ctx)
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    modes = {"baseline raise+catch": baseline, "capture_error, no span": plain,
             "capture_error, recording span": recording, "capture_error, span not sampled": not_sampled,
             "capture_error, queue full": queue_full}
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for fn in modes.values():  # warm caches (type names, severities, metric attribute sets)
        for i in range(50):
            fn(i)
    chunk = 100
    for start in range(0, n, chunk):
        top_up_error_ids()  # the writer thread's job in production (paused here)
        order = list(modes.items())
        if (start // chunk) % 2:
            order.reverse()
        for name, fn in order:
            for i in range(start, min(n, start + chunk)):
                w, c = fn(i)
                wall[name].append(w / 1e9)
                cpu[name].append(c / 1e9)
    print(f"capture_error on the request path ({n} calls per mode, interleaved; wall / thread CPU)")
    out: dict[str, float] = {}
    for name in modes:
        ws, cs = sorted(wall[name]), sorted(cpu[name])
        print(f"  {name:32s} wall {percentiles(ws)}")
        print(f"  {'':32s} cpu  p50 {pct(cs, 0.5) * 1e6:7.1f} us  p99 {pct(cs, 0.99) * 1e6:7.1f} us")
        out[name] = pct(ws, 0.5) * 1e6
        out[name + " p99"] = pct(ws, 0.99) * 1e6
    print(f"  dropped while full: {full.dropped['queue_full']}")
    # The deferred half: what the writer thread does per event before grouping (scrub, fingerprint...).
    pending = []
    while t.writer._items:
        pending.append(t.writer._items.popleft())
    prepare = getattr(t, "_prepare", None)
    if prepare is not None and pending and not isinstance(pending[0], ErrorEvent):
        costs = []
        for item in pending[:n]:
            c0 = time.thread_time_ns()
            prepare(item)
            costs.append((time.thread_time_ns() - c0) / 1e9)
        costs.sort()
        print(f"  deferred to the writer thread (per event, CPU): p50 {pct(costs, 0.5) * 1e6:.1f} us  "
              f"p99 {pct(costs, 0.99) * 1e6:.1f} us")
    unpause(t)
    unpause(full)
    provider.shutdown()
    return out


def bench_store(label: str, url: str, n: int, groups: int = 20) -> None:
    """Fill the queue first (writer paused), then time the writer draining it: the store's rate."""
    t = tracker_for(url, queue_size=n + 10)
    t.store.ping()  # schema created, connections warm
    excs = []
    for g in range(groups):  # `groups` distinct fingerprints
        exc = make_exc(g)
        excs.append((exc, ["bench", str(g)]))
    ctx = ErrorContext(endpoint="/api/hvac/duct/{duct_id}", method="POST")
    real_start = t.writer.start
    t.writer.start = lambda: None  # type: ignore[method-assign]
    t.writer._thread = object()  # type: ignore[assignment]
    for i in range(n):
        exc, fp = excs[i % groups]
        t.capture_error(exc, ctx, fingerprint=fp)
    t.writer._thread = None
    t.writer.start = real_start  # type: ignore[method-assign]
    t0 = time.perf_counter()
    t.writer.start()
    assert t.flush(600)
    elapsed = time.perf_counter() - t0
    stats = t.writer.stats
    print(f"{label:10s} {n} events, {groups} groups: stored in {elapsed:.2f}s -> "
          f"{stats['stored'] / elapsed:,.0f} events/s ({stats['batches']} batches, dropped {stats['dropped']})")
    asyncio.run(t.shutdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL to benchmark too")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    parser.add_argument("--capture-only", action="store_true", help="skip the store throughput part")
    args = parser.parse_args()
    n = min(args.n, 1000) if args.quick else args.n
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench-errors.db'}"
        bench_capture(sqlite_url, n)
        if not args.capture_only:
            bench_store("sqlite", sqlite_url, n * 4)
    if args.postgres and not args.capture_only:
        bench_store("postgresql", args.postgres, n * 4)


if __name__ == "__main__":
    main()
