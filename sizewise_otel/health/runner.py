"""Running checks: concurrently, each bounded by its timeout, results cached per check.

Three rules keep ``/health`` from ever hanging on a dependency:

1. Every run is bounded with ``asyncio.wait(..., timeout=)``, and on expiry the run is cancelled
   *without waiting for it to unwind* (``asyncio.wait_for`` waits for the cancelled task, which a
   check that swallows ``CancelledError`` can delay forever).
2. Synchronous checks (sync SQLAlchemy engine, sync Redis) run in a daemon thread of their own, not
   in the loop's default executor: a call stuck in ``recv()`` cannot be interrupted, and in a shared
   pool it would starve ``getaddrinfo`` and the app's own ``to_thread`` work, and block interpreter
   exit. While such a call is still stuck, the next run of that check does not start a second
   thread: it reports ``timeout`` at once. So at most one thread per check is ever stuck.
3. Concurrent callers share one in-flight run per check (single flight), and results younger than
   the TTL are served from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sizewise_otel.health.model import CheckResult, CheckSpec, Outcome, Status, redact

try:  # keep health probes out of the app's own spans and client metrics
    from opentelemetry.instrumentation.utils import suppress_instrumentation
except ImportError:  # pragma: no cover
    suppress_instrumentation = contextlib.nullcontext  # type: ignore[assignment]


def _is_async(fn: Callable[..., Any]) -> bool:
    call = type(fn).__call__ if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or (call is not None and inspect.iscoroutinefunction(call))


def _is_timeout(exc: BaseException) -> bool:
    """A client's own timeout (socket_timeout, httpx, psycopg connect_timeout) is a timeout too."""
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return True
    return "timeout expired" in str(exc).lower() or "timed out" in str(exc).lower()


class CheckRunner:
    def __init__(self, default_timeout: float, ttl: float, *,
                 on_result: Callable[[CheckResult], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.default_timeout = default_timeout
        self.ttl = ttl
        self._on_result = on_result
        self._clock = clock
        self._wall = wall
        self.results: dict[str, CheckResult] = {}
        self._inflight: dict[str, asyncio.Task[CheckResult]] = {}
        # Work still running after its run ended (a thread stuck in a call, or a task that ignored
        # cancellation): name -> monotonic start time. Threads add and remove themselves.
        self._stuck: dict[str, float] = {}
        self._threads: dict[str, float] = {}
        self._stuck_lock = threading.Lock()

    def timeout_of(self, spec: CheckSpec) -> float:
        return spec.timeout if spec.timeout is not None else self.default_timeout

    # --- one run ------------------------------------------------------------------------------

    async def run(self, spec: CheckSpec) -> CheckResult:
        """Run one check now; never raises, never takes (much) longer than its timeout."""
        timeout = self.timeout_of(spec)
        started_mono = self._clock()
        started_wall = self._wall()
        t0 = time.perf_counter()
        with self._stuck_lock:
            stuck_since = self._stuck.get(spec.name, self._threads.get(spec.name))
        if stuck_since is not None:
            outcome = Outcome(Status.CRITICAL, reason="timeout", message=(
                f"previous run still waiting after {started_mono - stuck_since:.1f}s "
                f"(timeout {timeout:g}s); not starting another"))
        else:
            outcome = await self._bounded(spec, timeout)
        if not outcome.message:
            outcome.message = outcome.reason or outcome.status.value
        if outcome.status is not Status.HEALTHY and outcome.advice is None:
            outcome.advice = spec.advice_for(outcome.reason or "error")
        if outcome.observed_unit is None:
            outcome.observed_unit = spec.observed_unit
        result = CheckResult(spec.name, outcome.status, spec.critical, outcome,
                             time.perf_counter() - t0, started_wall, started_mono)
        self.results[spec.name] = result
        if self._on_result is not None:
            self._on_result(result)
        return result

    async def _bounded(self, spec: CheckSpec, timeout: float) -> Outcome:
        task = asyncio.ensure_future(self._invoke(spec))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            self._watch_abandoned(spec.name, task, track=False)
            raise
        if not done:
            task.cancel()
            self._watch_abandoned(spec.name, task, track=_is_async(spec.fn))
            return Outcome(Status.CRITICAL, reason="timeout",
                           message=f"no answer within {timeout:g}s")
        try:
            return Outcome.of(task.result())
        except Exception as exc:
            return Outcome(Status.CRITICAL, reason="timeout" if _is_timeout(exc) else "error",
                           message=redact(f"{type(exc).__name__}: {exc}"))

    def _watch_abandoned(self, name: str, task: asyncio.Future[Any], *, track: bool) -> None:
        """A timed-out run: consume its eventual outcome; track an async one until it ends.

        (A thread-backed run tracks itself: its thread is in ``_threads`` until it returns.)
        """
        if track:
            with self._stuck_lock:
                self._stuck.setdefault(name, self._clock())

        def clear(t: asyncio.Future[Any]) -> None:
            if not t.cancelled():
                t.exception()  # consumed: no "exception was never retrieved" noise
            if track:
                with self._stuck_lock:
                    self._stuck.pop(name, None)

        task.add_done_callback(clear)

    async def _invoke(self, spec: CheckSpec) -> Any:
        with suppress_instrumentation():
            if _is_async(spec.fn):
                return await spec.fn()
            value = await self._in_thread(spec.name, spec.fn)
            if inspect.isawaitable(value):
                value = await value
            return value

    def _in_thread(self, name: str, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        ctx = contextvars.copy_context()
        with self._stuck_lock:
            self._threads[name] = self._clock()

        def deliver(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def target() -> None:
            try:
                value, ok = ctx.run(fn), True
            except BaseException as exc:
                value, ok = exc, False
            with self._stuck_lock:
                self._threads.pop(name, None)
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(deliver, ok, value)

        threading.Thread(target=target, name=f"sizewise-health-{name}", daemon=True).start()
        return future

    # --- cached, single-flight ----------------------------------------------------------------

    def fresh(self, name: str, max_age: float | None = None) -> CheckResult | None:
        result = self.results.get(name)
        limit = self.ttl if max_age is None else max_age
        if result is not None and result.age(self._clock()) <= limit:
            return result
        return None

    async def get(self, spec: CheckSpec, max_age: float | None = None) -> CheckResult:
        """The cached result if younger than the TTL, else the (shared) result of a new run."""
        cached = self.fresh(spec.name, max_age)
        if cached is not None:
            return cached
        return await self.refresh(spec)

    async def refresh(self, spec: CheckSpec) -> CheckResult:
        task = self._inflight.get(spec.name)
        loop = asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self.run(spec), name=f"sizewise-health:{spec.name}")
            self._inflight[spec.name] = task
        # shield: one caller going away (a client disconnect) must not cancel the shared run
        return await asyncio.shield(task)

    def cancel_inflight(self) -> None:
        """At shutdown: abandon shared runs (each is bounded anyway; this avoids pending-task noise)."""
        for task in self._inflight.values():
            if not task.done():
                task.cancel()
        self._inflight.clear()

    async def get_many(self, specs: Iterable[CheckSpec], max_age: float | None = None) -> list[CheckResult]:
        return list(await asyncio.gather(*(self.get(s, max_age) for s in specs)))

    async def refresh_many(self, specs: Iterable[CheckSpec]) -> list[CheckResult]:
        return list(await asyncio.gather(*(self.refresh(s) for s in specs)))
