"""A small cache facade that records ``sizewise.cache.*`` (the Redis instrumentation has no metrics).

Backed by Redis (sync ``redis.Redis``) when given, else by a bounded in-process LRU. A Redis
failure is a cache miss with ``cache.result="error"``: callers bypass the cache, never fail, and a
small circuit breaker keeps a hung Redis from costing a timeout on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from threading import Lock
from typing import Any

from sizewise_otel.telemetry import Telemetry


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
        self._open_until = 0.0
        self._ops = telemetry.instrument("sizewise.cache.operations")
        self._dur = telemetry.instrument("sizewise.cache.operation.duration")
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._dur_attrs = {op: {"cache.backend": self.backend, "cache.operation": op}
                           for op in ("get", "set", "delete")}

    def _record(self, op: str, result: str, started: float) -> None:
        key = (op, result)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._attrs[key] = {"cache.backend": self.backend, "cache.operation": op,
                                        "cache.result": result}
        self._ops.add(1, attrs)
        self._dur.record(time.perf_counter() - started, self._dur_attrs[op])

    @property
    def bypassed(self) -> bool:
        """True while the breaker is open after a backend failure."""
        return time.monotonic() < self._open_until

    def _fail(self, op: str, t0: float) -> None:
        # Open the breaker: a hung or dead Redis costs one timeout per BREAKER_SECONDS, not one
        # per request.
        self._open_until = time.monotonic() + self.BREAKER_SECONDS
        self._record(op, "error", t0)

    def get(self, key: str) -> bytes | None:
        t0 = time.perf_counter()
        if self.bypassed:
            self._record("get", "error", t0)
            return None
        try:
            value = self.client.get(key)
        except Exception:
            self._fail("get", t0)
            return None
        self._record("get", "hit" if value is not None else "miss", t0)
        return value

    def set(self, key: str, value: bytes) -> bool:
        t0 = time.perf_counter()
        if self.bypassed:
            self._record("set", "error", t0)
            return False
        try:
            self.client.set(key, value, ex=self.ttl)
        except Exception:
            self._fail("set", t0)
            return False
        self._record("set", "set", t0)
        return True
