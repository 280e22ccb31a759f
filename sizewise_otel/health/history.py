"""Bounded per-check history: status transitions and time-weighted uptime.

Memory is bounded whatever the run rate, per check:
- at most ``MAX_TRANSITIONS`` transitions (and none older than the retention),
- at most 1,440 minute buckets (the last 24 h, for 1 h / 24 h uptime and the trend),
- at most ``retention_hours`` hour buckets (HEALTH_RETENTION_HOURS, default 168).
Measured full: about 0.45 MB per check (transition messages are capped at 300 characters).

Uptime is time-weighted: the time between two runs counts for the status of the earlier run (a
gap longer than ``max_gap`` counts only up to ``max_gap``: time nobody observed is not counted).
``warning`` counts as up; only ``critical`` is down.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sizewise_otel.health.model import CheckResult, Status

MAX_TRANSITIONS = 1000
MINUTE_BUCKETS = 24 * 60
_INDEX = {Status.HEALTHY: 1, Status.WARNING: 2, Status.CRITICAL: 3}


@dataclass(frozen=True)
class Transition:
    at: float  # epoch seconds
    check: str
    previous: str | None
    current: str
    reason: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Buckets:
    """Fixed-width time buckets: [start, healthy_s, warning_s, critical_s, runs]."""

    def __init__(self, width: float, maxlen: int) -> None:
        self.width = width
        self.data: deque[list[float]] = deque(maxlen=maxlen)

    def _bucket(self, at: float) -> list[float]:
        start = at - at % self.width
        if not self.data or self.data[-1][0] < start:
            self.data.append([start, 0.0, 0.0, 0.0, 0])
        return self.data[-1]

    def add(self, at: float, status: Status | None, seconds: float, runs: int) -> None:
        bucket = self._bucket(at)
        if status is not None and seconds > 0:
            bucket[_INDEX[status]] += seconds
        bucket[4] += runs

    def totals(self, since: float) -> tuple[float, float, float, int]:
        h = w = c = 0.0
        runs = 0
        for start, bh, bw, bc, br in reversed(self.data):
            if start + self.width <= since:
                break
            h, w, c, runs = h + bh, w + bw, c + bc, runs + int(br)
        return h, w, c, runs


class CheckHistory:
    def __init__(self, name: str, retention_hours: float, *, max_gap: float = 60.0) -> None:
        self.name = name
        self.retention_s = retention_hours * 3600.0
        self.max_gap = max_gap
        self.transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)
        self.minutes = _Buckets(60.0, MINUTE_BUCKETS)
        self.hours = _Buckets(3600.0, max(1, int(retention_hours + 0.999)))
        self.last_status: Status | None = None
        self.last_at: float | None = None
        self.since: float | None = None  # when the current status began

    def record(self, status: Status, at: float, *, reason: str | None = None,
               message: str = "") -> Transition | None:
        if self.last_status is not None and self.last_at is not None:
            gap = min(max(0.0, at - self.last_at), self.max_gap)
            for buckets in (self.minutes, self.hours):
                buckets.add(at, self.last_status, gap, 0)
        for buckets in (self.minutes, self.hours):
            buckets.add(at, None, 0.0, 1)
        transition = None
        if status is not self.last_status:
            transition = Transition(at, self.name, self.last_status.value if self.last_status else None,
                                    status.value, reason, message)
            self.transitions.append(transition)
            self.since = at
        self.last_status, self.last_at = status, at
        return transition

    def uptime(self, window_s: float, now: float) -> float | None:
        """Share of observed time in the window spent not critical; None if nothing was observed."""
        buckets = self.minutes if window_s <= MINUTE_BUCKETS * 60 else self.hours
        h, w, c, _ = buckets.totals(now - window_s)
        if self.last_status is not None and self.last_at is not None:  # the open interval until now
            tail = min(max(0.0, now - self.last_at), self.max_gap)
            h += tail if self.last_status is Status.HEALTHY else 0.0
            w += tail if self.last_status is Status.WARNING else 0.0
            c += tail if self.last_status is Status.CRITICAL else 0.0
        observed = h + w + c
        if observed <= 0:
            return None if self.last_status is None else float(self.last_status is not Status.CRITICAL)
        return (h + w) / observed

    def recent_transitions(self, now: float, limit: int = 50) -> list[Transition]:
        cutoff = now - self.retention_s
        kept = [t for t in self.transitions if t.at >= cutoff]
        return kept[-limit:]

    def trend(self, now: float, minutes: int = 60) -> list[dict[str, Any]]:
        """Per minute over the last ``minutes``: seconds spent in each status and runs."""
        since = now - minutes * 60
        return [{"start": start, "healthy_s": round(h, 3), "warning_s": round(w, 3),
                 "critical_s": round(c, 3), "runs": int(r)}
                for start, h, w, c, r in self.minutes.data if start > since]


class HealthHistory:
    """The history of every check, fed with each result."""

    def __init__(self, retention_hours: float, *, max_gap: float = 60.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.retention_hours = retention_hours
        self.max_gap = max_gap
        self._wall = wall
        self.checks: dict[str, CheckHistory] = {}

    def of(self, name: str) -> CheckHistory:
        found = self.checks.get(name)
        if found is None:
            found = self.checks[name] = CheckHistory(name, self.retention_hours, max_gap=self.max_gap)
        return found

    def record(self, result: CheckResult) -> Transition | None:
        return self.of(result.name).record(result.status, result.checked_at,
                                           reason=result.outcome.reason, message=result.outcome.message)

    def uptime(self, name: str, now: float | None = None) -> dict[str, float | None]:
        now = self._wall() if now is None else now
        hist = self.checks.get(name)
        if hist is None:
            return {"1h": None, "24h": None}
        return {"1h": _round(hist.uptime(3600.0, now)), "24h": _round(hist.uptime(86400.0, now))}

    def report(self, name: str, *, now: float | None = None, limit: int = 50) -> dict[str, Any]:
        now = self._wall() if now is None else now
        hist = self.of(name)
        return {
            "check": name,
            "status": hist.last_status.value if hist.last_status else None,
            "since": hist.since,
            "uptime": self.uptime(name, now),
            "transitions": [t.to_dict() for t in hist.recent_transitions(now, limit)],
            "trend": hist.trend(now),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
