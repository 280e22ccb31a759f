"""Error tracker benchmark: capture_error cost on the request path, and sustained events/s into the store.

    python bench/bench_errors.py                      # SQLite file in a temp dir
    python bench/bench_errors.py --postgres URL       # also PostgreSQL (postgresql+psycopg://...)

Prints the capture cost against a bare baseline (raising and catching the same exception), with the
queue accepting and with the queue full, then events per second drained by the writer thread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sizewise_otel.errors import ErrorContext, ErrorTracker
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


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))] * 1e6  # noqa: E731
    mean = statistics.fmean(samples) * 1e6
    return f"p50 {p(0.5):7.1f} us  p90 {p(0.9):7.1f} us  p99 {p(0.99):7.1f} us  mean {mean:7.1f} us"


def bench_capture(url: str, n: int) -> None:
    ctx = ErrorContext(user_id="u1", endpoint="/api/hvac/duct/{duct_id}", method="POST",
                       extra={"password": "x", "duct": {"w": 12, "h": 8}})
    base = []
    for i in range(n):
        t0 = time.perf_counter()
        make_exc(i)
        base.append(time.perf_counter() - t0)
    print(f"baseline raise+catch            {percentiles(base)}")

    t = tracker_for(url, queue_size=max(n * 2, 10))
    t.writer.start = lambda: None  # measure the caller's side only: nothing drains the queue
    t.writer._thread = object()  # type: ignore[assignment]
    cost = []
    for i in range(n):
        exc = make_exc(i)
        t0 = time.perf_counter()
        t.capture_error(exc, ctx)
        cost.append(time.perf_counter() - t0)
    print(f"capture_error (queue accepting) {percentiles(cost)}")
    ratio = statistics.median(cost) / statistics.median(base)
    print(f"  ratio to baseline (median)    {ratio:.1f}x")

    full = tracker_for(url, queue_size=10)
    full.writer.start = lambda: None
    full.writer._thread = object()  # type: ignore[assignment]
    for i in range(10):
        full.capture_error(make_exc(i))
    cost = []
    for i in range(n):
        exc = make_exc(i)
        t0 = time.perf_counter()
        full.capture_error(exc, ctx)
        cost.append(time.perf_counter() - t0)
    print(f"capture_error (queue full)      {percentiles(cost)}   dropped={full.dropped['queue_full']}")


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench-errors.db'}"
        bench_capture(sqlite_url, args.n)
        bench_store("sqlite", sqlite_url, args.n * 4)
    if args.postgres:
        bench_store("postgresql", args.postgres, args.n * 4)


if __name__ == "__main__":
    main()
