"""Alert signals from the error stream: new group, regression, and rate spike by severity.

Listeners receive one plain dict per signal (``kind``, ``severity``, ``group_id``, ``title``, ...,
all scrubbed). A signal with the same key is raised at most once per ``ALERT_COOLDOWN_MINUTES``.
The tracker subscribes :func:`log_signal` (one structlog line per signal). These are listeners,
not notifiers: delivery to channels (log, Slack, webhook) is :mod:`sizewise_otel.alerts.notify`'s
``Notifier``, the package's one notifier concept.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import structlog

from sizewise_otel.errors.store import BatchResult

AlertListener = Callable[[dict[str, Any]], None]
log = structlog.get_logger("sizewise.errors.alerts")


def log_signal(event: dict[str, Any]) -> None:
    """The default listener: one structured log line per alert signal."""
    log.warning("error alert", **event)


class SpikeDetector:
    """Per severity, events per minute against the mean of the previous ``baseline_minutes``.

    A spike: the current minute holds at least ``min_events`` and ``factor`` times the baseline.
    Counts are this process's (each worker judges its own traffic).
    """

    def __init__(self, *, factor: float = 5.0, min_events: int = 20, baseline_minutes: int = 10) -> None:
        self.factor = factor
        self.min_events = min_events
        self.baseline_minutes = baseline_minutes
        self._minutes: dict[str, deque[list[int]]] = defaultdict(lambda: deque(maxlen=baseline_minutes + 1))

    def add(self, severity: str, n: int, now: float) -> dict[str, Any] | None:
        minute = int(now // 60)
        window = self._minutes[severity]
        if window and window[-1][0] == minute:
            window[-1][1] += n
        else:
            window.append([minute, n])
        current = window[-1][1]
        history = {m: c for m, c in list(window)[:-1] if minute - self.baseline_minutes <= m < minute}
        baseline = sum(history.values()) / self.baseline_minutes
        if current >= self.min_events and current >= self.factor * max(baseline, 1.0):
            return {"per_minute": current, "baseline_per_minute": round(baseline, 2)}
        return None


class AlertSignals:
    def __init__(self, cooldown_minutes: float, spike: SpikeDetector | None = None) -> None:
        self.cooldown_seconds = cooldown_minutes * 60.0
        self.spike = spike or SpikeDetector()
        self._listeners: list[AlertListener] = []
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.emitted: deque[dict[str, Any]] = deque(maxlen=100)  # recent signals, for diagnostics

    def add_listener(self, listener: AlertListener) -> None:
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def remove_listener(self, listener: AlertListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def listeners(self) -> list[AlertListener]:
        return list(self._listeners)

    def on_batch(self, result: BatchResult, by_severity: dict[str, int], now: float | None = None) -> None:
        now = now or time.time()
        for sig in result.signals:
            self.emit({
                "kind": sig.kind, "severity": sig.severity, "group_id": sig.group_id,
                "error_type": sig.error_type, "title": sig.title, "route": sig.route, "count": sig.count,
            }, key=sig.group_id, now=now)
        for severity, n in by_severity.items():
            spike = self.spike.add(severity, n, now)
            if spike:
                self.emit({"kind": "rate_spike", "severity": severity, **spike}, key=severity, now=now)

    def emit(self, event: dict[str, Any], *, key: str, now: float | None = None) -> bool:
        now = now or time.time()
        cache_key = (str(event["kind"]), key)
        with self._lock:
            last = self._last.get(cache_key)
            if last is not None and now - last < self.cooldown_seconds:
                return False
            self._last[cache_key] = now
            if len(self._last) > 10_000:  # bounded: forget the oldest half
                for k, _ in sorted(self._last.items(), key=lambda kv: kv[1])[:5_000]:
                    del self._last[k]
            listeners = list(self._listeners)
        event = {**event, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        self.emitted.append(event)
        for listener in listeners:
            try:
                listener(dict(event))
            except Exception as exc:  # a broken listener must not stop the writer
                log.warning("alert listener failed", error=type(exc).__name__)
        return True
