"""Embedded, bounded, multi-resolution history of the widgets' values and the catalog's metrics.

A sampler reads this process's own metrics from ``prometheus_client.REGISTRY`` (the same
collection ``GET /metrics`` serves, so the values are exactly what Prometheus would scrape), keeps a
short raw window for ``rate``, evaluates every widget's expression in-process, and writes the
results into three ring-buffer tiers, the spec's retention tiers (``METRICS_RETENTION_HOURS`` below
7 d cuts each tier to it):

==========  ======  ========
tier        step    points
==========  ======  ========
``1h``      5 s     720
``24h``     1 min   1 440
``7d``      15 min  672
==========  ======  ========

Memory bound: at most ``MAX_SERIES`` (512) derived series, each a preallocated ``array('f')`` of
2 832 points (4 bytes each, 11.3 KB): **5.8 MB** for the tiers (plus one 8-byte epoch per slot per
tier, 23 KB). The raw window for ``rate`` holds ``RAW_POINTS`` = 13 snapshots of at most
``MAX_RAW_SERIES`` = 4 000 samples of only the metrics the widgets use, with label sets shared
between snapshots (at most 8 000 kept): a few MB in the worst case. Measured with tracemalloc on
the demo under load (~900 relevant samples, 128 derived series): about 3 MB in all. Series past
the cap are dropped and counted in ``History.dropped_series``.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sizewise_otel.dashboard.expr import Labels, Samples, clean
from sizewise_otel.fastpath import BoundedCache, collect_samples

MAX_SERIES = 512
MAX_RAW_SERIES = 4_000
RAW_WINDOW_SECONDS = 60.0
RAW_POINTS = 13  # 60 s at 5 s, plus one
SKIP_LABEL_PREFIX = "otel_scope_"


@dataclass(frozen=True)
class TierSpec:
    name: str
    step: float
    points: int


TIERS: tuple[TierSpec, ...] = (TierSpec("1h", 5.0, 720), TierSpec("24h", 60.0, 1440),
                               TierSpec("7d", 900.0, 672))
RANGES = {t.name: t for t in TIERS}
POINTS_PER_SERIES = sum(t.points for t in TIERS)
MEMORY_BOUND_BYTES = MAX_SERIES * POINTS_PER_SERIES * 4

Key = tuple[str, Labels]  # (series family, labels)


def retained(spec: TierSpec, retention_hours: float | None) -> TierSpec:
    """``spec`` cut to ``METRICS_RETENTION_HOURS``: a shorter retention keeps fewer points (and less
    memory); a longer one keeps the tier as it is (7 d at most in process: Prometheus keeps the rest)."""
    if retention_hours is None:
        return spec
    return TierSpec(spec.name, spec.step, max(1, min(spec.points, math.ceil(retention_hours * 3600 / spec.step))))


class _Tier:
    def __init__(self, spec: TierSpec) -> None:
        self.spec = spec
        self.epochs = array("q", [-1] * spec.points)
        self.values: dict[Key, array] = {}
        self.current_epoch = -1
        self.acc: dict[Key, list[float]] = {}  # key -> [sum, count] of the current step

    def add(self, ts: float, values: Mapping[Key, float]) -> None:
        epoch = int(ts // self.spec.step)
        if epoch != self.current_epoch:
            self._flush()
            self.current_epoch = epoch
        for key, value in values.items():
            slot = self.acc.setdefault(key, [0.0, 0])
            slot[0] += value
            slot[1] += 1

    def _flush(self) -> None:
        if self.current_epoch < 0:
            return
        idx = self.current_epoch % self.spec.points
        self.epochs[idx] = self.current_epoch
        for arr in self.values.values():
            arr[idx] = math.nan
        for key, (total, count) in self.acc.items():
            arr = self.values.get(key)
            if arr is None:
                arr = self.values[key] = array("f", [math.nan] * self.spec.points)
            arr[idx] = total / count
        self.acc = {}

    def read(self, family: str, now: float) -> dict[Labels, list[tuple[float, float]]]:
        oldest = int(now // self.spec.step) - self.spec.points + 1
        order = sorted((e, i) for i, e in enumerate(self.epochs) if e >= oldest and e != self.current_epoch)
        out: dict[Labels, list[tuple[float, float]]] = {}
        for (fam, labels), arr in self.values.items():
            if fam != family:
                continue
            points = [(e * self.spec.step, arr[i]) for e, i in order if not math.isnan(arr[i])]
            if points:
                out[labels] = points
        for (fam, labels), (total, count) in self.acc.items():
            if fam == family and count:
                out.setdefault(labels, []).append((self.current_epoch * self.spec.step, total / count))
        return out


class History:
    """The tiers plus the raw window; thread-safe (the sampler runs in a worker thread)."""

    def __init__(self, max_series: int = MAX_SERIES, retention_hours: float | None = None) -> None:
        self.max_series = max_series
        self.tiers = [_Tier(retained(s, retention_hours)) for s in TIERS]
        self.raw: deque[tuple[float, dict[str, dict[Labels, float]]]] = deque(maxlen=RAW_POINTS)
        self.known: set[Key] = set()
        self.dropped_series = 0
        self.last_sample: float | None = None
        self._lock = threading.Lock()

    # --- input ----------------------------------------------------------------------------
    def add_snapshot(self, ts: float, snapshot: dict[str, dict[Labels, float]]) -> None:
        with self._lock:
            while self.raw and ts - self.raw[0][0] > RAW_WINDOW_SECONDS:
                self.raw.popleft()
            self.raw.append((ts, snapshot))
            self.last_sample = ts

    def samples(self) -> Samples:
        with self._lock:
            return Samples(list(self.raw))

    def record(self, ts: float, values: Mapping[Key, float]) -> None:
        accepted: dict[Key, float] = {}
        with self._lock:
            for key, value in values.items():
                if not math.isfinite(value):
                    continue
                if key not in self.known:
                    if len(self.known) >= self.max_series:
                        self.dropped_series += 1
                        continue
                    self.known.add(key)
                accepted[key] = value
            for tier in self.tiers:
                tier.add(ts, accepted)

    # --- output ---------------------------------------------------------------------------
    def series(self, family: str, range_: str = "1h", now: float | None = None
               ) -> dict[Labels, list[tuple[float, float]]]:
        tier = self.tiers[[t.name for t in TIERS].index(range_)]
        with self._lock:
            return tier.read(family, time.time() if now is None else now)

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"series": len(self.known), "max_series": self.max_series,
                    "dropped_series": self.dropped_series,
                    "memory_bound_bytes": MEMORY_BOUND_BYTES,
                    "tiers": {t.name: {"step_seconds": t.step, "points": t.points} for t in TIERS}}


# Label sets are shared between snapshots: the raw window then costs a dict entry per sample, not
# a fresh tuple of strings. Bounded: cleared when it outgrows the raw-series cap.
_INTERNED: BoundedCache[Labels, Labels] = BoundedCache(2 * MAX_RAW_SERIES, on_full="clear")


def _intern(labels: Labels) -> Labels:
    found = _INTERNED.get(labels)
    return _INTERNED.put(labels, labels) if found is None else found


def read_registry(names: set[str] | None = None, registry: object = None) -> dict[str, dict[Labels, float]]:
    """One snapshot of the process's metrics (``otel_scope_*`` labels dropped)."""
    out: dict[str, dict[Labels, float]] = {}
    for count, sample in enumerate(collect_samples(names, registry)):
        if count >= MAX_RAW_SERIES:
            return out
        labels = _intern(tuple(sorted((k, v) for k, v in sample.labels.items()
                                      if not k.startswith(SKIP_LABEL_PREFIX))))
        series = out.setdefault(sample.name, {})
        series[labels] = series.get(labels, 0.0) + float(sample.value)
    # This process is up by definition: the in-process stand-in for Prometheus' ``up``.
    out.setdefault("up", {(): 1.0})
    return out


def vectors_to_values(family: str, vector: Mapping[Labels, float], limit: int = 20) -> dict[Key, float]:
    items = sorted(clean(dict(vector)).items())[:limit]
    return {(family, labels): value for labels, value in items}


def merge(parts: Iterable[Mapping[Key, float]]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for p in parts:
        out.update(p)
    return out
