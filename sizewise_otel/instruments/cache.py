"""A small cache facade that records ``sizewise.cache.*`` (the Redis instrumentation has no metrics).

Backed by Redis (sync ``redis.Redis``) when given, else by a bounded in-process LRU. A Redis
failure is a cache miss with ``cache.result="error"``: callers bypass the cache, never fail, and a
small circuit breaker keeps a hung Redis from costing a timeout on every request.

Both catalog instruments are recorded per operation, cheaply (see docs/performance.md):

- ``sizewise.cache.operations`` (``cache.backend``, ``cache.operation``, ``cache.result``): an
  integer cell per attribute set, incremented under a lock and reported at collection time by an
  observable counter: the same cumulative monotonic sum an SDK ``Counter.add`` per operation
  produces, without validating, copying and hashing the attribute dict on every call. The cells
  are shared per meter provider, so every cache of the process adds into one stream.
- ``sizewise.cache.operation.duration`` (``cache.backend``, ``cache.operation``): the HTTP layer's
  lean histogram aggregation (attribute set resolved once), or the SDK instrument when the
  provider does not allow it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from threading import Lock
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from sizewise_otel.fastpath import current_sampled_span
from sizewise_otel.instruments.registry import PerProvider
from sizewise_otel.instruments.sql import recorder
from sizewise_otel.telemetry import Telemetry

_OPERATIONS = "sizewise.cache.operations"


class OperationCounts:
    """``sizewise.cache.operations`` as integer cells, reported by an observable counter."""

    def __init__(self, telemetry: Telemetry) -> None:
        from sizewise_otel.catalog import signal

        sig = signal(_OPERATIONS)
        # The duration recorder's lock: with the lean histogram an operation then counts and records
        # its duration under a single acquisition (InstrumentedCache._count).
        self.lock = recorder(telemetry, "sizewise.cache.operation.duration").lock
        self._cells: dict[tuple[str, str, str], tuple[list[int], dict[str, str]]] = {}
        telemetry.meter.create_observable_counter(_OPERATIONS, callbacks=[self._observe], unit=sig.unit,
                                                  description=sig.description)

    def cell(self, backend: str, op: str, result: str) -> list[int]:
        key = (backend, op, result)
        found = self._cells.get(key)
        if found is None:
            with self.lock:
                found = self._cells.setdefault(key, ([0], {"sizewise.cache.backend": backend,
                                                           "sizewise.cache.operation": op,
                                                           "sizewise.cache.result": result}))
        return found[0]

    def _observe(self, _options: CallbackOptions) -> list[Observation]:
        with self.lock:
            return [Observation(cell[0], attrs) for cell, attrs in self._cells.values() if cell[0]]


_counts: PerProvider[OperationCounts] = PerProvider()


def operation_counts(telemetry: Telemetry) -> OperationCounts:
    """The process's cells for this meter provider (one observable counter per provider)."""
    return _counts.get(telemetry.meter_provider, lambda: OperationCounts(telemetry))


class LocalLRU:
    """In-process cache for the embedded default; bounded by entry count."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._lock = Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if expires and expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        with self._lock:
            self._data[key] = ((time.monotonic() + ex) if ex else 0.0, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def ping(self) -> bool:
        return True


class InstrumentedCache:
    BREAKER_SECONDS = 2.0

    def __init__(self, telemetry: Telemetry, redis_client: Any = None, *, ttl_seconds: int = 300) -> None:
        self.client = redis_client if redis_client is not None else LocalLRU()
        self.backend = "redis" if redis_client is not None else "local"
        self.ttl = ttl_seconds
        self._open_until = 0.0  # 0.0 while closed: the hot path skips the clock
        counts = operation_counts(telemetry)
        self._lock = counts.lock
        self._dur = recorder(telemetry, "sizewise.cache.operation.duration")
        # A plain lean record when no measurement can carry an exemplar unless a sampled span is
        # current (the SDK's default trace-based filter); the Recorder otherwise.
        self._plain = self._dur.plain if self._dur.sampled_only else None
        # ... and counting in the same acquisition when the count cells share the histogram's lock.
        self._plain_counting = self._dur.record_counting if self._dur.lock is self._lock else None
        # (op, result) -> (count cell, duration handle): everything an operation touches, resolved once
        self._cells = {(op, result): (counts.cell(self.backend, op, result),
                                      self._dur.bind({"sizewise.cache.backend": self.backend,
                                                                      "sizewise.cache.operation": op}))
                       for op, results in (("get", ("hit", "miss", "error")), ("set", ("set", "error")))
                       for result in results}
        self._hit, self._miss, self._set = self._cells[("get", "hit")], self._cells[("get", "miss")], \
            self._cells[("set", "set")]

    def _record(self, op: str, result: str, started: float) -> None:
        self._count(self._cells[(op, result)], started)

    def _count(self, cell_handle: tuple[list[int], Any], started: float) -> None:
        cell, handle = cell_handle
        span = current_sampled_span()
        sampled = span is not None
        if not sampled and self._plain_counting is not None:
            self._plain_counting(handle, time.perf_counter() - started, cell)
            return
        with self._lock:
            cell[0] += 1
        if sampled:  # may carry an exemplar, as the SDK's would
            self._dur.record(handle, time.perf_counter() - started, span)
        elif self._plain is not None:
            self._plain(handle, time.perf_counter() - started)
        else:
            self._dur.record(handle, time.perf_counter() - started)

    @property
    def bypassed(self) -> bool:
        """True while the breaker is open after a backend failure."""
        if not self._open_until:
            return False
        if time.monotonic() < self._open_until:
            return True
        self._open_until = 0.0  # elapsed: closed again (the next failure reopens it)
        return False

    def _fail(self, op: str, t0: float) -> None:
        # Open the breaker: a hung or dead Redis costs one timeout per BREAKER_SECONDS, not one
        # per request.
        self._open_until = time.monotonic() + self.BREAKER_SECONDS
        self._record(op, "error", t0)

    def get(self, key: str) -> bytes | None:
        t0 = time.perf_counter()
        if self._open_until and self.bypassed:
            self._record("get", "error", t0)
            return None
        try:
            value = self.client.get(key)
        except Exception:
            self._fail("get", t0)
            return None
        self._count(self._hit if value is not None else self._miss, t0)
        return value

    def set(self, key: str, value: bytes) -> bool:
        t0 = time.perf_counter()
        if self._open_until and self.bypassed:
            self._record("set", "error", t0)
            return False
        try:
            self.client.set(key, value, ex=self.ttl)
        except Exception:
            self._fail("set", t0)
            return False
        self._count(self._set, t0)
        return True
