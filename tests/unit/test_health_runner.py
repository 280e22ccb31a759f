"""The runner: timeouts that hold whatever a check does, threads, cache, single flight."""

from __future__ import annotations

import asyncio
import threading
import time

from sizewise_otel.health.model import CheckSpec, Outcome, Status
from sizewise_otel.health.runner import CheckRunner

MARGIN = 0.25


async def test_sync_check_runs_in_a_thread_not_the_loop() -> None:
    seen: list[str] = []

    def check() -> Outcome:
        seen.append(threading.current_thread().name)
        return Outcome(Status.HEALTHY, 1, "x")

    r = await CheckRunner(1.0, 0).run(CheckSpec("t", check))
    assert r.status is Status.HEALTHY and seen == ["sizewise-health-t"]


async def test_hung_sync_check_times_out_and_never_stacks_threads() -> None:
    release = threading.Event()
    calls = 0

    def hang() -> None:
        nonlocal calls
        calls += 1
        release.wait(10)

    runner = CheckRunner(0.3, 0)
    spec = CheckSpec("hung", hang, advice="do something")
    t0 = time.perf_counter()
    r = await runner.run(spec)
    assert time.perf_counter() - t0 < 0.3 + MARGIN
    assert (r.status, r.outcome.reason, r.outcome.advice) == (Status.CRITICAL, "timeout", "do something")
    # the first thread is still stuck: the next run reports at once and starts no second thread
    t0 = time.perf_counter()
    r2 = await runner.run(spec)
    assert time.perf_counter() - t0 < 0.05
    assert r2.outcome.reason == "timeout" and "still waiting" in r2.outcome.message
    assert calls == 1
    release.set()
    await asyncio.sleep(0.1)
    r3 = await runner.run(spec)
    assert r3.status is Status.HEALTHY and calls == 2


async def test_async_check_that_swallows_cancellation_is_still_bounded() -> None:
    async def stubborn() -> None:
        for _ in range(20):
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                continue  # misbehaving: ignores the cancel

    runner = CheckRunner(0.2, 0)
    t0 = time.perf_counter()
    r = await runner.run(CheckSpec("stubborn", stubborn))
    assert time.perf_counter() - t0 < 0.2 + MARGIN
    assert r.outcome.reason == "timeout"
    r2 = await runner.run(CheckSpec("stubborn", stubborn))
    assert "still waiting" in r2.outcome.message


async def test_exceptions_are_critical_with_reason_error_and_redacted() -> None:
    def boom() -> None:
        raise ConnectionError("cannot reach redis://user:pw@cache:6379")

    r = await CheckRunner(1.0, 0).run(CheckSpec("boom", boom, advice=lambda reason: f"advice for {reason}"))
    assert (r.status, r.outcome.reason) == (Status.CRITICAL, "error")
    assert "pw" not in r.outcome.message and "ConnectionError" in r.outcome.message
    assert r.outcome.advice == "advice for error"


async def test_per_check_timeout_overrides_the_default() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.5)

    r = await CheckRunner(0.1, 0).run(CheckSpec("slow", slow, timeout=1.0))
    assert r.status is Status.HEALTHY


async def test_checks_run_concurrently() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.3)

    def slow_sync() -> None:
        time.sleep(0.3)

    specs = [CheckSpec(f"a{i}", slow) for i in range(5)] + [CheckSpec(f"s{i}", slow_sync) for i in range(5)]
    t0 = time.perf_counter()
    results = await CheckRunner(2.0, 0).get_many(specs)
    assert time.perf_counter() - t0 < 0.3 + MARGIN
    assert all(r.status is Status.HEALTHY for r in results)


async def test_ttl_cache_and_single_flight() -> None:
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)

    runner = CheckRunner(1.0, ttl=5.0)
    spec = CheckSpec("c", counted)
    results = await asyncio.gather(*(runner.get(spec) for _ in range(20)))
    assert calls == 1 and len({id(r) for r in results}) == 1
    await asyncio.sleep(0.05)
    again = await runner.get(spec)
    assert calls == 1 and again is results[0] and again.age(time.monotonic()) >= 0.05
    await runner.get(spec, max_age=0.0)
    assert calls == 2


async def test_on_result_sees_every_run() -> None:
    seen = []
    runner = CheckRunner(1.0, 0, on_result=seen.append)
    await runner.run(CheckSpec("a", lambda: "warn"))
    assert [(r.name, r.status) for r in seen] == [("a", Status.WARNING)]
