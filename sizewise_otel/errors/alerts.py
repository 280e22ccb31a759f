"""Alert signals from the error stream: a new group, a regression, a spike of one group.

Listeners receive one plain dict per signal (``kind``, ``severity``, ``group_id``, ``error_type``,
``title``, ``route``, ``count``, ``event_id``, ...; all scrubbed, the title parameterized). A signal
is raised at most once per cooldown per (kind, group); the groups remembered for cooldowns and
spikes are bounded (least recently seen forgotten first). The tracker subscribes :func:`log_signal`
(one log line per signal) and, when channels are configured, :class:`NotifyListener`, which hands
each signal to :mod:`sizewise_otel.alerts.notify` (Slack, signed webhook) as a :class:`Notification`.

A spike: at least ``min_events`` of one group in the last minute and ``factor`` times that group's
mean per minute over the ``baseline_minutes`` before. "The last minute" is a sliding window
(this minute's count plus the previous minute's, weighted by how much of it is still in the window),
so a burst across a minute boundary is not split in two. Counts are this process's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from sizewise_otel.alerts.notify import Notification, ThreadedDispatcher
from sizewise_otel.alerts.rules import runbook_base_url
from sizewise_otel.errors.store import BatchResult, GroupSignal

AlertListener = Callable[[dict[str, Any]], None]
log = structlog.get_logger("sizewise.errors.alerts")

KINDS = ("new_group", "regression", "spike")


def log_signal(event: dict[str, Any]) -> None:
    """The default listener: one structured log line per alert signal."""
    log.warning("error alert", **event)


class _Lru(OrderedDict[str, Any]):
    """A dict that forgets its least recently touched keys beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str, default: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = self[key] = default()
            while len(self) > self.limit:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return value


class SpikeDetector:
    """Per group: events in the last minute against the group's own baseline (see the module doc)."""

    def __init__(self, *, factor: float = 5.0, min_events: int = 20, baseline_minutes: int = 10,
                 max_groups: int = 10_000) -> None:
        self.factor = factor
        self.min_events = min_events
        self.baseline_minutes = baseline_minutes
        self._minutes: _Lru = _Lru(max_groups)  # group -> deque([minute, count]), touched minutes only

    def __len__(self) -> int:
        return len(self._minutes)

    def add(self, group_id: str, n: int, now: float) -> dict[str, Any] | None:
        minute, into = divmod(now, 60.0)
        minute = int(minute)
        window: deque[list[int]] = self._minutes.touch(
            group_id, lambda: deque(maxlen=self.baseline_minutes + 2))
        if window and window[-1][0] == minute:
            window[-1][1] += n
        else:
            window.append([minute, n])
        counts = {m: c for m, c in window}
        current = counts.get(minute, 0) + counts.get(minute - 1, 0) * (1.0 - into / 60.0)
        baseline = sum(c for m, c in counts.items() if minute - 1 - self.baseline_minutes <= m < minute - 1) \
            / self.baseline_minutes
        if current >= self.min_events and current >= self.factor * max(baseline, 1.0):
            return {"per_minute": round(current, 1), "baseline_per_minute": round(baseline, 2)}
        return None


class AlertSignals:
    def __init__(self, cooldown_minutes: float, spike: SpikeDetector | None = None, *, max_groups: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.cooldown_seconds = cooldown_minutes * 60.0
        self.spike = spike if spike is not None else SpikeDetector(max_groups=max_groups)
        self.clock = clock
        self._listeners: list[AlertListener] = []
        self._last: _Lru = _Lru(max_groups * len(KINDS))  # (kind, group) -> last time raised
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

    @property
    def remembered(self) -> int:
        """Cooldown entries held (bounded by ``max_groups`` per kind)."""
        return len(self._last)

    def on_batch(self, result: BatchResult, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for sig in result.signals:
            self.emit(_describe(sig, sig.kind), key=sig.group_id, now=now)
        for sig in result.groups:
            spike = self.spike.add(sig.group_id, sig.batch_count, now)
            if spike:
                self.emit({**_describe(sig, "spike"), **spike}, key=sig.group_id, now=now)

    def emit(self, event: dict[str, Any], *, key: str, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        cache_key = f"{event['kind']}\x00{key}"
        with self._lock:
            last = self._last.get(cache_key)
            if last is not None and now - last < self.cooldown_seconds:
                return False
            self._last.touch(cache_key, lambda: now)
            self._last[cache_key] = now
            listeners = list(self._listeners)
        event = {**event, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        self.emitted.append(event)
        for listener in listeners:
            try:
                listener(dict(event))
            except Exception as exc:  # a broken listener must not stop the writer
                log.warning("alert listener failed", error=type(exc).__name__)
        return True


def _describe(sig: GroupSignal, kind: str) -> dict[str, Any]:
    return {"kind": kind, "severity": sig.severity, "group_id": sig.group_id, "error_type": sig.error_type,
            "title": sig.title, "route": sig.route, "count": sig.count, "event_id": sig.event_id}


# --- delivery: a signal as an alert notification -------------------------------------------------

ALERTNAMES = {"new_group": "ErrorGroupNew", "regression": "ErrorGroupRegressed", "spike": "ErrorGroupSpike"}
# The runbook sections (docs/runbooks.md) that say what to do: the catalog's error alerts.
RUNBOOK_ANCHORS = {"new_group": "newerrorgroup", "regression": "errorgroupregressed", "spike": "errorspike"}
# Error severities on the alert scale (Slack colours, Alertmanager-like routing).
ALERT_SEVERITY = {"critical": "critical", "high": "warning", "medium": "info", "low": "info"}


def error_links(base_url: str, group_id: str, event_id: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    links = {"group_url": f"{base}/errors/groups/{group_id}"}
    if event_id:
        links["error_url"] = f"{base}/errors/{event_id}"
    return links


def notification_for(event: Mapping[str, Any], *, service: str, base_url: str) -> Notification:
    """One error signal (as listeners receive it) -> the alert notification the channels deliver."""
    kind = str(event["kind"])
    where = f" on {event['route']}" if event.get("route") else ""
    error_type = str(event.get("error_type") or "")
    short_type = error_type.rsplit(".", 1)[-1]
    count = int(event.get("count") or 0)
    summary = {
        "new_group": f"New error: {short_type}{where}",
        "regression": f"Resolved error is back: {short_type}{where}",
        "spike": f"Error spike: {short_type}{where}",
    }[kind]
    if kind == "spike":
        detail = (f"{event.get('per_minute')} events in the last minute "
                  f"(baseline {event.get('baseline_per_minute')}/min), {count} in total.")
    else:
        detail = f"{count} event{'s' if count != 1 else ''} so far."
    links = error_links(base_url, str(event["group_id"]), str(event.get("event_id") or ""))
    labels = {"group_id": str(event["group_id"]), "error_type": error_type, "route": str(event.get("route") or ""),
              "error_severity": str(event.get("severity") or ""), "kind": kind, "job": service, "service": service}
    annotations = {
        "summary": summary,
        "description": f"{event.get('title', '')}. {detail}",
        "value": str(count),
        "count": str(count),
        "runbook_url": f"{runbook_base_url()}#{RUNBOOK_ANCHORS[kind]}",
        "dashboard_url": links.get("error_url", links["group_url"]),
        **links,
    }
    at = time.time()
    return Notification(ALERTNAMES[kind], "firing", ALERT_SEVERITY.get(str(event.get("severity")), "warning"),
                        labels, annotations, float(count), at, rule=f"error_{kind}")


class NotifyListener:
    """The listener that hands signals to the alert channels, off the writer thread (never blocks)."""

    def __init__(self, dispatcher: ThreadedDispatcher, *, service: str, base_url: str) -> None:
        self.dispatcher = dispatcher
        self.service = service
        self.base_url = base_url

    def __call__(self, event: dict[str, Any]) -> None:
        self.dispatcher.submit(notification_for(event, service=self.service, base_url=self.base_url))
