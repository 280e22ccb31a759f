"""The runner: timeouts that hold whatever a check does, threads, cache, single flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sizewise_otel.health.model import CheckSpec, Outcome, Status
from sizewise_otel.health.runner import CheckRunner

T = TypeVar("T")

# Far beyond any answer these tests expect, far below a hang: bounds compare with it, so a loaded
# machine cannot fail them, while a run that waited for a hung check would.
HANG = 30.0


async def until(run: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 10.0) -> T:
    """Call ``run`` until ``ok`` holds of its result or ``within`` seconds pass; the last result."""
    deadline = time.monotonic() + within
    while True:
        result = await run()
        if ok(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


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
        release.wait(HANG)

    runner = CheckRunner(0.3, 0)
    spec = CheckSpec("hung", hang, advice="do something")
    t0 = time.perf_counter()
    r = await runner.run(spec)
    # "timeout" while the thread still hangs: the run returned without waiting for the check
    assert (r.status, r.outcome.reason, r.outcome.advice) == (Status.CRITICAL, "timeout", "do something")
    assert time.perf_counter() - t0 < HANG / 2
    # the first thread is still stuck: the next run reports at once (not after its own 30 s
    # timeout) and starts no second thread
    t0 = time.perf_counter()
    r2 = await runner.run(CheckSpec("hung", hang, timeout=HANG / 2))
    assert time.perf_counter() - t0 < HANG / 4
    assert r2.outcome.reason == "timeout" and "still waiting" in r2.outcome.message
    assert calls == 1
    release.set()
    r3 = await until(lambda: runner.run(spec), lambda r: r.status is Status.HEALTHY)
    assert r3.status is Status.HEALTHY and calls == 2


async def test_async_check_that_swallows_cancellation_is_still_bounded() -> None:
    done = False

    async def stubborn() -> None:
        while not done:  # misbehaving: ignores every cancel, would run until the test ends
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue

    runner = CheckRunner(0.2, 0)
    try:
        t0 = time.perf_counter()
        r = await runner.run(CheckSpec("stubborn", stubborn))
        assert r.outcome.reason == "timeout"
        assert time.perf_counter() - t0 < HANG / 2
        r2 = await runner.run(CheckSpec("stubborn", stubborn))
        assert "still waiting" in r2.outcome.message
    finally:
        done = True


async def test_exceptions_are_critical_with_reason_error_and_redacted() -> None:
    def boom() -> None:
        raise ConnectionError("cannot reach redis://user:pw@cache:6379")

    r = await CheckRunner(1.0, 0).run(CheckSpec("boom", boom, advice=lambda reason: f"advice for {reason}"))
    assert (r.status, r.outcome.reason) == (Status.CRITICAL, "error")
    assert "pw" not in r.outcome.message and "ConnectionError" in r.outcome.message
    assert r.outcome.advice == "advice for error"


async def test_per_check_timeout_overrides_the_default() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.3)

    # 0.3 s is three default timeouts, and a hundredth of the check's own
    r = await CheckRunner(0.1, 0).run(CheckSpec("slow", slow, timeout=HANG))
    assert r.status is Status.HEALTHY


async def test_checks_run_concurrently() -> None:
    # Each check waits until all ten are running at once: run one after another, none would see the
    # others and each would fail at its deadline. No wall-clock bound: only concurrency passes.
    n = 10
    lock = threading.Lock()
    arrived = 0
    all_here = threading.Event()

    def arrive() -> None:
        nonlocal arrived
        with lock:
            arrived += 1
            if arrived == n:
                all_here.set()

    async def together() -> bool:
        arrive()
        deadline = time.monotonic() + HANG / 3
        while not all_here.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return all_here.is_set()

    def together_sync() -> bool:
        arrive()
        return all_here.wait(HANG / 3)

    specs = [CheckSpec(f"a{i}", together) for i in range(5)] + [CheckSpec(f"s{i}", together_sync) for i in range(5)]
    results = await CheckRunner(HANG / 2, 0).get_many(specs)
    assert [r.name for r in results if r.status is not Status.HEALTHY] == []


async def test_ttl_cache_and_single_flight() -> None:
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)

    runner = CheckRunner(1.0, ttl=HANG)
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
