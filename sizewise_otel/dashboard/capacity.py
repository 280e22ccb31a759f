"""Capacity-planning insights as plain sentences with numbers, for ``/dashboard/overview``.

The capacity widgets (``widgets.py``) read Prometheus recording rules: the 6 h least-squares fit and
slope of CPU, memory and disk usage, and each instance's measured capacity. Embedded, there is no
Prometheus: this module computes those recorded series in-process (the fit over the history's
1-minute tier, the capacity from 5-minute request rates within the latency SLO), puts them in a
``Samples`` snapshot under the recording rules' own names and evaluates the widgets' expressions on
it, so a sentence says what the Grafana panel would show. With ``PROMETHEUS_URL`` the same widgets
(and the recorded slope) are queried instead.

A number is only given when the history behind it covers its window; otherwise the sentence says
which window is needed and how much has been collected.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sizewise_otel.alerts import rules
from sizewise_otel.dashboard.expr import Expr, Labels, Samples, Vector, clean, m, sum_
from sizewise_otel.dashboard.history import History
from sizewise_otel.dashboard.widgets import HTTP, HTTP_COUNT, PROJECTION_CAP_DAYS, widget

DAY = 86400.0
HISTORY_RANGE = "24h"  # the tier the fit reads: 1-minute points, 360 of them over 6 h
COVERAGE_SLACK = 120.0  # seconds a window may fall short (the tier's step, twice) and still count
CAPACITY_RATE_WINDOW = 300.0  # the recording rule's rate5m
CAPACITY_SLOT = 3600.0  # the best rate is kept per hour: 168 slots over 7 days
Query = Callable[[Expr], Awaitable[Vector]]


def seconds(window: str) -> float:
    """``"6h"`` -> 21600.0 (the Prometheus durations the rules use: s, m, h, d)."""
    match = re.fullmatch(r"(\d+)([smhd])", window)
    if match is None:
        raise ValueError(f"unsupported window {window!r}")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def duration(secs: float) -> str:
    """A human span: ``"42 s"``, ``"25 min"``, ``"5 h 10 min"``, ``"3 d 4 h"``."""
    secs = max(0.0, secs)
    if secs < 60:
        return f"{secs:.0f} s"
    minutes = int(secs // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _window(window: str) -> str:
    return window[:-1] + " " + window[-1]  # "6h" -> "6 h"


def linear_fit(points: list[tuple[float, float]], at: float) -> tuple[float, float] | None:
    """Least-squares line through ``points``: (its value at ``at``, slope per second).

    What Prometheus' ``predict_linear(x[w], 0)`` and ``deriv(x[w])`` compute; None under 2 times."""
    n = len(points)
    if n < 2:
        return None
    t0 = points[0][0]  # centred on the first point: the sums stay small, float error too
    sx = sum(t - t0 for t, _ in points)
    sy = sum(v for _, v in points)
    sxx = sum((t - t0) ** 2 for t, _ in points)
    sxy = sum((t - t0) * v for t, v in points)
    denom = n * sxx - sx * sx
    if denom <= 0:
        return None
    slope = (n * sxy - sx * sy) / denom
    intercept = (sy - slope * sx) / n
    return intercept + slope * (at - t0), slope


@dataclass(frozen=True)
class Trend:
    """One resource whose usage (in %) is fitted and projected to 100 %."""

    signal: str  # cpu / memory / disk
    metric: str  # the raw gauge the recording rules fit
    usage_widget: str  # its widget, whose history the fit reads in-process
    days_widget: str  # the "days until 100 %" panel
    label: str  # the label that names the series (sizewise_usage_source, system_filesystem_mountpoint)


CPU, MEMORY, DISK = rules.RESOURCES
TRENDS = (
    Trend("disk", DISK, "system_disk", "disk_days_until_full", "system_filesystem_mountpoint"),
    Trend("memory", MEMORY, "system_memory", "memory_days_until_limit", "sizewise_usage_source"),
    Trend("cpu", CPU, "system_cpu", "cpu_days_until_saturation", "sizewise_usage_source"),
)


def _subject(trend: Trend, labels: Mapping[str, str]) -> str:
    where = f" on {labels['instance']}" if labels.get("instance") else ""
    name = labels.get(trend.label, "")
    if trend.signal == "disk":
        return f"Disk {name}{where}" if name else f"Disk{where}"
    return f"{'Memory' if trend.signal == 'memory' else 'CPU'}{where}"


def _reaches(trend: Trend, labels: Mapping[str, str]) -> str:
    if trend.signal == "disk":
        return "fills"
    container = labels.get(trend.label) == "container"
    if trend.signal == "memory":
        return "reaches its limit" if container else "reaches the host's total"
    return "reaches its quota" if container else "reaches 100 %"


def _in(days: float) -> str:
    return f"in {days * 24:.1f} hours" if days < 1 else f"in {days:.1f} days"


def trend_item(trend: Trend, labels: Mapping[str, str], days: float | None, slope: float | None,
               usage: float | None, *, collected: float | None = None) -> dict[str, Any]:
    """The sentence for one resource series; ``days``/``slope`` None when the window is not covered."""
    window = _window(rules.FIT_WINDOW)
    subject = _subject(trend, labels)
    now = f" (now {usage:.1f} %)" if usage is not None else ""
    value: float | None = None
    if days is None or slope is None:
        so_far = f"; {duration(collected)} collected so far" if collected is not None else ""
        sentence = f"{subject}: not enough history for the {window} trend yet (needs {window}{so_far})"
    elif slope <= 0:
        sentence = f"{subject}: no upward trend over the last {window}{now}"
    elif days <= 0:
        value = 0.0
        sentence = f"{subject} is at 100 % already{now}"
    elif days >= PROJECTION_CAP_DAYS:
        value = float(PROJECTION_CAP_DAYS)
        sentence = f"{subject} {_reaches(trend, labels)} in over a year at the {window} trend{now}"
    else:
        value = round(days, 2)
        sentence = f"{subject} {_reaches(trend, labels)} {_in(days)} at the {window} trend{now}"
    return {"signal": trend.signal, "labels": dict(labels), "sentence": sentence, "value": value,
            "unit": "d", "horizon": rules.FIT_WINDOW, "widget": trend.days_widget}


def capacity_item(share: float | None, capacity_rps: float | None, *, instance: str = "",
                  collected: float | None = None) -> dict[str, Any]:
    """``This instance serves 61 % of its measured capacity (1,240 req/min at the latency SLO)``."""
    who = f"Instance {instance}" if instance else "This instance"
    slo = f"{rules.SLO_OBJECTIVE:.0%} of requests under {rules.SLO_LATENCY_SECONDS} s"
    value: float | None = None
    if capacity_rps is None or share is None:
        so_far = f"; {duration(collected)} of samples so far" if collected is not None else ""
        sentence = (f"{who}: capacity not measured yet (needs {duration(CAPACITY_RATE_WINDOW)} of "
                    f"requests within the latency SLO, {slo}{so_far})")
    else:
        value = round(share, 1)
        sentence = (f"{who} serves {share:.0f} % of its measured capacity "
                    f"({capacity_rps * 60:,.0f} req/min at the latency SLO)")
    return {"signal": "requests", "labels": {"instance": instance} if instance else {},
            "sentence": sentence, "value": value, "unit": "percent", "horizon": rules.CAPACITY_WINDOW,
            "widget": "instance_capacity_utilization"}


class CapacityRecord:
    """In-process stand-in for the measured-capacity recording rules.

    Each sample adds (time, requests, requests within the SLO latency) from this process's request
    histogram; the 5-minute rate ending there counts when at most ``SLO_BUDGET`` of its requests
    were slower than ``SLO_LATENCY_SECONDS``. The best such rate is kept per hour for
    ``CAPACITY_WINDOW``: bounded (about 90 counter points, 168 slots)."""

    def __init__(self) -> None:
        self.window = seconds(rules.CAPACITY_WINDOW)
        self.points: deque[tuple[float, float, float]] = deque(maxlen=512)
        self.best: dict[int, float] = {}
        self.first: float | None = None
        self._total = sum_(m(HTTP_COUNT))
        self._good = sum_(m(f"{HTTP}_bucket", le=rules.SLO_LATENCY_SECONDS))

    def observe(self, ts: float, samples: Samples) -> None:
        if self.first is None:
            self.first = ts
        total = self._total.evaluate(samples).get((), 0.0)
        good = self._good.evaluate(samples).get((), 0.0)
        if self.points and total < self.points[-1][1]:
            self.points.clear()  # counter reset (a new meter provider): start over
        self.points.append((ts, total, good))
        while len(self.points) > 1 and ts - self.points[1][0] >= CAPACITY_RATE_WINDOW:
            self.points.popleft()  # keep exactly one point at least 5 minutes old
        old_ts, old_total, old_good = self.points[0]
        span, requests = ts - old_ts, total - old_total
        if span >= CAPACITY_RATE_WINDOW and requests > 0:
            miss = 1 - (good - old_good) / requests
            if miss <= rules.SLO_BUDGET + 1e-12:
                slot = int(ts // CAPACITY_SLOT)
                self.best[slot] = max(self.best.get(slot, 0.0), requests / span)
        oldest = int((ts - self.window) // CAPACITY_SLOT)
        for slot in [s for s in self.best if s <= oldest]:
            del self.best[slot]

    def capacity(self) -> float | None:
        """Requests per second: the best 5-minute rate within the SLO in the window, or None."""
        return max(self.best.values()) if self.best else None


def _fit_window(points: list[tuple[float, float]], now: float, window: float) -> list[tuple[float, float]]:
    return [(t, v) for t, v in points if now - window <= t <= now and math.isfinite(v)]


def embedded(history: History, record: CapacityRecord, samples: Samples, now: float) -> list[dict[str, Any]]:
    """The sentences from the in-process history: fit, then the widgets' own expressions."""
    window = seconds(rules.FIT_WINDOW)
    items: list[dict[str, Any]] = []
    for trend in TRENDS:
        recorded: dict[str, Vector] = {rules.fit_record(trend.metric): {}, rules.slope_record(trend.metric): {}}
        spans: dict[Labels, float] = {}
        latest: dict[Labels, float] = {}
        for labels, points in sorted(history.series(f"w:{trend.usage_widget}:0", HISTORY_RANGE, now).items()):
            inside = _fit_window(points, now, window)
            if not inside:
                continue
            spans[labels], latest[labels] = now - inside[0][0], inside[-1][1]
            fit = linear_fit(inside, now) if spans[labels] >= window - COVERAGE_SLACK else None
            if fit is not None:
                recorded[rules.fit_record(trend.metric)][labels] = fit[0]
                recorded[rules.slope_record(trend.metric)][labels] = fit[1]
        days = clean(widget(trend.days_widget).expr.evaluate(Samples([(now, recorded)])))
        slopes = recorded[rules.slope_record(trend.metric)]
        if not spans:
            items.append(trend_item(trend, {}, None, None, None, collected=0.0))
        for labels in sorted(spans):
            items.append(trend_item(trend, dict(labels), days.get(labels), slopes.get(labels),
                                    latest[labels], collected=spans[labels]))
    items.append(_embedded_capacity(record, samples, now))
    return items


def _embedded_capacity(record: CapacityRecord, samples: Samples, now: float) -> dict[str, Any]:
    capacity = record.capacity()
    collected = None if record.first is None else now - record.first
    if capacity is None:
        return capacity_item(None, None, collected=collected)
    load_query, _ = (q.expr for q in widget("instance_load_vs_capacity").queries)
    load = clean(load_query.evaluate(samples))
    if not load:
        return capacity_item(None, None, collected=collected)
    snapshot = dict(samples.snapshots[-1][1]) if samples.snapshots else {}
    snapshot[rules.INSTANCE_CAPACITY] = {labels: capacity for labels in load}
    augmented = Samples([*samples.snapshots[:-1], (now, snapshot)])
    share = clean(widget("instance_capacity_utilization").expr.evaluate(augmented))
    value = max(share.values()) if share else None
    return capacity_item(value, capacity if value is not None else None, collected=collected)


def _key(labels: Mapping[str, str], trend: Trend) -> tuple[str, str]:
    return labels.get("instance", ""), labels.get(trend.label, "")


async def from_prometheus(query: Query) -> list[dict[str, Any]]:
    """The sentences from Prometheus: the same widgets, plus the recorded slope for its sign."""
    items: list[dict[str, Any]] = []
    for trend in TRENDS:
        days = await query(widget(trend.days_widget).expr)
        slopes = await query(m(rules.slope_record(trend.metric)))
        # The usage widget keeps (instance, label) only: match it on those.
        usage = {_key(dict(k), trend): v for k, v in (await query(widget(trend.usage_widget).expr)).items()}
        if not days:
            items.append(trend_item(trend, {}, None, None, None))
        for labels, value in sorted(days.items()):
            lbl = dict(labels)
            items.append(trend_item(trend, lbl, value, slopes.get(labels), usage.get(_key(lbl, trend))))
    share = await query(widget("instance_capacity_utilization").expr)
    capacity = await query(widget("instance_load_vs_capacity").queries[1].expr)
    by_job = {dict(k).get("job", ""): v for k, v in capacity.items()}
    if not share:
        items.append(capacity_item(None, None))
    for labels, value in sorted(share.items()):
        lbl = dict(labels)
        items.append(capacity_item(value, by_job.get(lbl.get("job", "")), instance=lbl.get("instance", "")))
    return items
