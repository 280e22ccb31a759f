"""The embedded alert evaluator: the alert catalog evaluated in-process when no Prometheus runs.

Every ``METRICS_COLLECTION_INTERVAL`` seconds it reads the process's own metrics (by default the
Prometheus registry that ``GET /metrics`` serves, so it sees exactly what a scrape would), and
evaluates every threshold-style rule of the catalog (``AlertRule.embedded``): current value, or
``increase`` over a window, compared with the threshold, per series. An alert is *pending* until
its condition has held for ``for`` (``duration_seconds``), then *firing*; it is delivered at most
once per ``ALERT_COOLDOWN_MINUTES`` per alert instance (a reminder follows each further cooldown
while it keeps firing), and a *resolved* message follows when it clears.

Deliveries go to the log, Slack (``ALERT_SLACK_WEBHOOK_URL``/``ALERT_SLACK_CHANNEL``) and a
generic webhook (``ALERT_WEBHOOK_URL``, HMAC-signed with ``ALERT_WEBHOOK_SECRET``) through the
bounded, per-channel queues of ``notify.Dispatcher``: a dead endpoint never blocks anything.

With ``PROMETHEUS_URL`` set (the full stack) Prometheus and Alertmanager own alerting, the loop
does not run, and ``POST /alerts/relay`` forwards Alertmanager's webhook to ``ALERT_WEBHOOK_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sizewise_otel.alerts.notify import (
    Dispatcher,
    Notification,
    Notifier,
    RawWebhook,
    RetryPolicy,
    configured_notifiers,
)
from sizewise_otel.alerts.rules import DEFAULT_RULES, AlertRule
from sizewise_otel.catalog import NOTIFICATION_CHANNEL, NOTIFICATION_OUTCOME
from sizewise_otel.runtime.tasks import cancel_task
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry
from sizewise_otel.web.auth import require

log = structlog.get_logger("sizewise.alerts")

Labels = dict[str, str]
Sample = tuple[str, Labels, float]  # (sample name as on /metrics, labels, value)
SeriesKey = tuple[tuple[str, str], ...]
_DROPPED_LABELS = ("otel_scope_name", "otel_scope_version", "otel_scope_schema_url")


class MetricSource(Protocol):
    def collect(self) -> Iterable[Sample]: ...


class RegistrySource:
    """Samples of a ``prometheus_client`` registry: what ``GET /metrics`` would serve.

    With ``names`` only those samples are read, and only the metrics that can produce them are
    translated from the OTel SDK (see :func:`sizewise_otel.dashboard.history.collect_samples`): the
    evaluator sets them to its rules' metrics, the only samples a rule ever looks at.
    """

    def __init__(self, registry: Any = None, names: Iterable[str] | None = None) -> None:
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        self.registry = registry
        self.names: set[str] | None = None if names is None else set(names)

    def collect(self) -> Iterable[Sample]:
        from sizewise_otel.dashboard.history import collect_samples

        for sample in collect_samples(self.names, self.registry):
            yield sample.name, dict(sample.labels), float(sample.value)


def _key(labels: Labels) -> SeriesKey:
    return tuple(sorted(labels.items()))


@dataclass
class ActiveAlert:
    rule: AlertRule
    labels: Labels
    value: float
    active_since: float  # evaluator clock
    starts_at: float  # wall clock
    firing: bool = False
    notified: bool = False

    def describe(self) -> dict[str, Any]:
        return {"alertname": self.rule.alertname, "rule": self.rule.name,
                "state": "firing" if self.firing else "pending", "severity": str(self.rule.severity),
                "labels": self.labels, "value": self.value, "active_since": self.starts_at,
                "annotations": self.rule.annotations(self.labels, self.value)}


class AlertEvaluator:
    def __init__(self, settings: Settings, telemetry: Telemetry, *,
                 rules: Sequence[AlertRule] | None = None, source: MetricSource | None = None,
                 notifiers: Sequence[Notifier] | None = None, retry: RetryPolicy | None = None,
                 interval: float | None = None, queue_size: int = 100,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.rules = [r for r in (DEFAULT_RULES if rules is None else rules) if r.embedded]
        rule_metrics = {r.metric_name for r in self.rules}
        self.source = source or RegistrySource(names=rule_metrics)
        if isinstance(self.source, RegistrySource) and self.source.names is None:
            self.source.names = rule_metrics  # a rule reads nothing else: don't translate the rest
        self.interval = float(interval or settings.metrics_collection_interval)
        self.cooldown = settings.alert_cooldown_minutes * 60.0
        self.clock = clock
        self.wall_clock = wall_clock
        self.base_labels = {"job": settings.otel_service_name, "instance": socket.gethostname()}
        self.enabled = settings.metrics_collection_enabled and not settings.prometheus_url
        self.active: dict[tuple[str, SeriesKey], ActiveAlert] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.evaluations = 0
        self._last_sent: dict[tuple[str, SeriesKey], float] = {}
        self._history: dict[tuple[str, SeriesKey], deque[tuple[float, float]]] = {}
        self._retention = max((r.window_seconds for r in self.rules if r.function), default=0)
        self._task: asyncio.Task[None] | None = None
        self._counter: Any = None
        with contextlib.suppress(Exception):
            self._counter = telemetry.instrument("sizewise.alerts.notifications")
        if notifiers is None:
            notifiers = configured_notifiers(settings, retry or RetryPolicy())
        self.dispatcher = Dispatcher(list(notifiers), self._count, queue_size=queue_size)

    # --- delivery outcomes ---------------------------------------------------------------
    def _count(self, channel: str, outcome: str) -> None:
        self.outcomes[(channel, outcome)] += 1
        if self._counter is not None:
            with contextlib.suppress(Exception):
                self._counter.add(1, {NOTIFICATION_CHANNEL: channel, NOTIFICATION_OUTCOME: outcome})

    # --- lifecycle -----------------------------------------------------------------------
    async def initialize(self) -> None:
        self.dispatcher.start()
        if self.enabled and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sizewise-alerts")

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        await self.dispatcher.stop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert evaluation failed")
            await asyncio.sleep(self.interval)

    async def evaluate_once(self) -> list[Notification]:
        samples = await asyncio.to_thread(lambda: list(self.source.collect()))
        return self.evaluate(samples)

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self, samples: Iterable[Sample], now: float | None = None) -> list[Notification]:
        """Evaluate every rule against one collection of samples; submit and return deliveries."""
        now = self.clock() if now is None else now
        by_name: dict[str, list[tuple[Labels, float]]] = {}
        for name, labels, value in samples:
            clean = {k: v for k, v in labels.items() if k not in _DROPPED_LABELS}
            by_name.setdefault(name, []).append(({**self.base_labels, **clean}, value))
        self._record_history(by_name, now)
        out: list[Notification] = []
        for rule in self.rules:
            try:
                current = self._rule_values(rule, by_name, now)
            except Exception:
                log.exception("alert rule failed", rule=rule.name)
                continue
            out.extend(self._transition(rule, current, now))
        self.evaluations += 1
        for notification in out:
            self.dispatcher.submit(notification)
        return out

    def _record_history(self, by_name: dict[str, list[tuple[Labels, float]]], now: float) -> None:
        metrics = {r.metric_name for r in self.rules if r.function == "increase"}
        first = self.evaluations == 0
        for metric in metrics:
            for labels, value in by_name.get(metric, []):
                key = (metric, _key(labels))
                points = self._history.get(key)
                if points is None:
                    points = self._history[key] = deque()
                    if not first:  # a series born since the last look started at zero
                        points.append((now - self.interval, 0.0))
                points.append((now, value))
                while len(points) > 2 and points[1][0] <= now - self._retention:
                    points.popleft()
        # Forget series that vanished long ago (bounded memory).
        for key in [k for k, p in self._history.items() if p[-1][0] < now - 2 * self._retention]:
            del self._history[key]

    def _increase(self, metric: str, labels: Labels, window: float, now: float) -> float:
        points = list(self._history.get((metric, _key(labels)), ()))
        start = now - window
        while len(points) > 1 and points[1][0] <= start:
            points.pop(0)
        total = 0.0
        for (_, a), (_, b) in itertools.pairwise(points):
            total += b - a if b >= a else b  # a drop is a counter reset
        return total

    def _rule_values(self, rule: AlertRule, by_name: dict[str, list[tuple[Labels, float]]],
                     now: float) -> dict[SeriesKey, tuple[Labels, float]]:
        series = [(lbl, v) for lbl, v in by_name.get(rule.metric_name, []) if rule.matches(lbl)]
        values: dict[SeriesKey, tuple[Labels, float]] = {}
        if rule.function == "increase":
            sums: dict[SeriesKey, tuple[Labels, float]] = {}
            for labels, _ in series:
                group = {k: labels.get(k, "") for k in rule.by}
                inc = self._increase(rule.metric_name, labels, rule.window_seconds, now)
                key = _key(group)
                sums[key] = (group, sums.get(key, (group, 0.0))[1] + inc)
            candidates = sums.values()
        else:
            candidates = series
        for labels, value in candidates:
            if rule.compare(value):
                values[_key(labels)] = (labels, value)
        return values

    def _transition(self, rule: AlertRule, current: dict[SeriesKey, tuple[Labels, float]],
                    now: float) -> list[Notification]:
        out: list[Notification] = []
        for key, (labels, value) in current.items():
            ident = (rule.name, key)
            alert = self.active.get(ident)
            if alert is None:
                alert = self.active[ident] = ActiveAlert(rule, labels, value, now, self.wall_clock())
            alert.value = value
            if not alert.firing and now - alert.active_since >= rule.duration_seconds:
                alert.firing = True
            if alert.firing:
                last = self._last_sent.get(ident)
                due = last is None or (now - last >= self.cooldown and (self.cooldown > 0 or not alert.notified))
                if due:
                    self._last_sent[ident] = now
                    alert.notified = True
                    out.append(self._notification(alert, "firing"))
        for ident in [i for i in self.active if i[0] == rule.name and i[1] not in current]:
            alert = self.active.pop(ident)
            if alert.firing and alert.notified:
                out.append(self._notification(alert, "resolved", ends_at=self.wall_clock()))
        return out

    def _notification(self, alert: ActiveAlert, status: str, ends_at: float | None = None) -> Notification:
        labels = {**alert.labels, "service": alert.labels.get("job", "")}
        return Notification(alert.rule.alertname, status, str(alert.rule.severity), labels,
                            alert.rule.annotations(alert.labels, alert.value), alert.value,
                            alert.starts_at, ends_at, alert.rule.name)

    # --- HTTP ------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()

        @r.get("/alerts", dependencies=[Depends(require("viewer", audit=False))])
        async def alerts() -> JSONResponse:
            return JSONResponse({
                "embedded_evaluation": self.enabled,
                "interval_seconds": self.interval,
                "cooldown_minutes": self.settings.alert_cooldown_minutes,
                "channels": self.dispatcher.channels,
                "active": [a.describe() for a in self.active.values()],
                "rules": [{"name": x.name, "alertname": x.alertname, "expr": x.promql,
                           "for": x.for_duration, "severity": str(x.severity),
                           "runbook_url": x.runbook_url} for x in self.rules],
                "deliveries": [{"channel": c, "outcome": o, "count": n}
                               for (c, o), n in sorted(self.outcomes.items())],
            })

        @r.post("/alerts/relay", dependencies=[Depends(require("admin"))])
        async def relay(request: Request) -> JSONResponse:
            """Alertmanager's webhook receiver -> ALERT_WEBHOOK_URL (signed when configured)."""
            try:
                payload = await request.json()
            except ValueError:
                return JSONResponse({"detail": "expected an Alertmanager webhook JSON body"}, 400)
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                return JSONResponse({"detail": "expected an Alertmanager webhook JSON body"}, 400)
            if "webhook" not in self.dispatcher.channels:
                return JSONResponse({"queued": False, "reason": "ALERT_WEBHOOK_URL is not set"})
            self.dispatcher.submit(RawWebhook(payload), channels=["webhook"])
            return JSONResponse({"queued": True}, status_code=202)

        return r
