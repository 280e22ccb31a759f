"""The embedded evaluator: `for`, cooldown, resolution, increase rules, real HTTP delivery,
signed webhooks, and a dead webhook that neither blocks nor goes uncounted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from sizewise_otel.alerts.evaluator import AlertEvaluator, RegistrySource
from sizewise_otel.alerts.notify import Notifier, RetryPolicy, verify_signature
from sizewise_otel.alerts.rules import DEFAULT_RULES, AlertRule, AlertSeverity
from sizewise_otel.catalog import NOTIFICATION_CHANNEL as CHANNEL
from sizewise_otel.catalog import NOTIFICATION_OUTCOME as OUTCOME
from sizewise_otel.settings import load_settings

CPU = "sizewise_cpu_usage_percent"


class Counter:
    def __init__(self) -> None:
        self.adds: list[tuple[float, dict[str, str]]] = []

    def add(self, amount: float, attributes: dict[str, str]) -> None:
        self.adds.append((amount, dict(attributes)))


class FakeTelemetry:
    def __init__(self) -> None:
        self.counter = Counter()

    def instrument(self, name: str) -> Counter:
        assert name == "sizewise.alerts.notifications"
        return self.counter


class Recorder(Notifier):
    channel = "log"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, notification: Any) -> bool:
        self.sent.append(notification)
        return True


class Source:
    def __init__(self) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []

    def collect(self) -> list[tuple[str, dict[str, str], float]]:
        return list(self.samples)


def _evaluator(rules: Any = None, cooldown: int = 15, **kw: Any) -> tuple[AlertEvaluator, Source]:
    settings = load_settings(alert_cooldown_minutes=cooldown, otel_service_name="svc")
    source = Source()
    ev = AlertEvaluator(settings, FakeTelemetry(), rules=rules, source=source,  # type: ignore[arg-type]
                        notifiers=kw.pop("notifiers", [Recorder()]), **kw)
    return ev, source


def _cpu_rule() -> AlertRule:
    return next(r for r in DEFAULT_RULES if r.name == "high_cpu_usage")


def test_for_duration_is_honoured_and_resolution_is_sent() -> None:
    ev, src = _evaluator([_cpu_rule()])
    src.samples = [(CPU, {"source": "host"}, 91.0)]
    assert ev.evaluate(src.collect(), now=0) == []
    assert ev.evaluate(src.collect(), now=299) == []  # pending: for is 5m
    assert [a["state"] for a in (x.describe() for x in ev.active.values())] == ["pending"]
    [fired] = ev.evaluate(src.collect(), now=300)
    assert fired.status == "firing" and fired.alertname == "HighCpuUsage"
    assert fired.annotations["value"] == "91.0%"
    assert fired.labels["job"] == "svc" and fired.labels["service"] == "svc"
    src.samples = [(CPU, {"source": "host"}, 40.0)]
    [resolved] = ev.evaluate(src.collect(), now=330)
    assert resolved.status == "resolved"
    assert ev.active == {}


def test_condition_interrupted_before_for_never_fires() -> None:
    ev, src = _evaluator([_cpu_rule()])
    src.samples = [(CPU, {}, 91.0)]
    ev.evaluate(src.collect(), now=0)
    src.samples = [(CPU, {}, 10.0)]
    assert ev.evaluate(src.collect(), now=200) == []
    src.samples = [(CPU, {}, 91.0)]
    assert ev.evaluate(src.collect(), now=250) == []
    assert ev.evaluate(src.collect(), now=500) == []  # only 250 s since it restarted
    assert len(ev.evaluate(src.collect(), now=550)) == 1


def test_delivers_once_per_cooldown() -> None:
    rule = AlertRule("hot", CPU, ">", 80, 0, AlertSeverity.WARNING, "Hot")
    ev, src = _evaluator([rule], cooldown=15)
    src.samples = [(CPU, {}, 99.0)]
    sent = [n for t in range(0, 15 * 60, 30) for n in ev.evaluate(src.collect(), now=t)]
    assert [n.status for n in sent] == ["firing"]
    # a reminder once the cooldown has passed, then quiet again
    assert [n.status for n in ev.evaluate(src.collect(), now=900)] == ["firing"]
    assert ev.evaluate(src.collect(), now=930) == []
    assert [n.status for n in ev.evaluate(src.collect(), now=1800)] == ["firing"]


def test_resolution_follows_a_delivered_firing() -> None:
    rule = AlertRule("hot", CPU, ">", 80, 0, AlertSeverity.WARNING, "Hot")
    ev, src = _evaluator([rule], cooldown=15)
    src.samples = [(CPU, {}, 99.0)]
    assert [n.status for n in ev.evaluate(src.collect(), now=0)] == ["firing"]
    src.samples = [(CPU, {}, 1.0)]
    assert [n.status for n in ev.evaluate(src.collect(), now=30)] == ["resolved"]
    src.samples = [(CPU, {}, 99.0)]
    assert ev.evaluate(src.collect(), now=60) == []  # within cooldown: suppressed
    src.samples = [(CPU, {}, 1.0)]
    assert ev.evaluate(src.collect(), now=90) == []  # never announced, so no resolution either


def test_increase_rule_and_new_series() -> None:
    spike = next(r for r in DEFAULT_RULES if r.name == "error_spike")  # > 50 in 5m, for 2m
    ev, src = _evaluator([spike])
    labels = {"error_type": "ValueError", "sizewise_error_severity": "high"}
    total = 0.0
    fired_at = None
    for t in range(0, 600, 30):
        total += 15 if t >= 60 else 0  # 30 errors a minute from t=60
        src.samples = [("sizewise_errors_total", labels, total)]
        out = ev.evaluate(src.collect(), now=t)
        if out and fired_at is None:
            fired_at = t
            assert out[0].labels == {"job": "svc", "service": "svc"}
            assert float(out[0].annotations["value"]) > 50
    assert fired_at is not None and fired_at >= 60 + 120  # increase > 50 takes >100 s, then for 2m
    groups = next(r for r in DEFAULT_RULES if r.name == "new_error_group")
    ev, src = _evaluator([groups])
    assert ev.evaluate([], now=0) == []
    # a counter born at 1 after the first look counts as an increase of 1
    src.samples = [("sizewise_error_groups_new_total", {"sizewise_error_severity": "high"}, 1.0)]
    assert ev.evaluate(src.collect(), now=30) == []
    assert [n.alertname for n in ev.evaluate(src.collect(), now=90)] == ["NewErrorGroup"]


def test_regex_matchers_select_the_right_checks() -> None:
    rule = next(r for r in DEFAULT_RULES if r.name == "critical_health_check")
    ev, src = _evaluator([rule])
    src.samples = [("sizewise_health_status", {"sizewise_health_check": c, "sizewise_health_state": s},
                    float(s == "critical")) for c in ("database", "redis", "system") for s in ("healthy", "critical")]
    ev.evaluate(src.collect(), now=0)
    out = ev.evaluate(src.collect(), now=120)
    assert [n.labels["sizewise_health_check"] for n in out] == ["system"]
    assert out[0].annotations["summary"] == "Health check system critical on svc"


def test_only_threshold_rules_are_evaluated_in_process() -> None:
    ev, _ = _evaluator()
    names = {r.name for r in ev.rules}
    assert {"high_cpu_usage", "high_error_rate", "database_down", "error_spike"} <= names
    assert "latency_slo_fast_burn" not in names and "scrape_target_down" not in names


def test_registry_source_reads_what_metrics_serves() -> None:
    registry = CollectorRegistry()
    Gauge(CPU, "cpu", ["source"], registry=registry).labels("host").set(93)
    rule = AlertRule("hot", CPU, ">", 80, 0, AlertSeverity.WARNING, "Hot")
    settings = load_settings(otel_service_name="svc")
    ev = AlertEvaluator(settings, FakeTelemetry(), rules=[rule], source=RegistrySource(registry),  # type: ignore[arg-type]
                        notifiers=[Recorder()])
    [n] = ev.evaluate(ev.source.collect(), now=0)
    assert n.value == 93 and n.labels["source"] == "host"


# --- real HTTP delivery ----------------------------------------------------------------------------

async def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_slack_and_signed_webhook_delivery(webhook_receiver: Any) -> None:
    url, received = webhook_receiver
    settings = load_settings(alert_slack_webhook_url=f"{url}/slack", alert_webhook_url=f"{url}/hook",
                             alert_webhook_secret="s3cret", alert_allow_http_webhooks=True,
                             alert_slack_channel="#ops", otel_service_name="svc")
    tel = FakeTelemetry()
    src = Source()
    rule = AlertRule("hot", CPU, ">", 80, 0, AlertSeverity.CRITICAL, "Hot", summary="Hot {{ $labels.job }}")
    ev = AlertEvaluator(settings, tel, rules=[rule], source=src, interval=0.05)  # type: ignore[arg-type]
    assert ev.dispatcher.channels == ["log", "slack", "webhook"]
    src.samples = [(CPU, {}, 99.0)]
    await ev.initialize()
    try:
        await _wait(lambda: len(received) >= 2)
        await asyncio.sleep(0.3)  # more evaluations: the cooldown keeps it to one delivery each
        assert len(received) == 2
        by_path = {path: (headers, body) for path, headers, body in received}
        slack = json.loads(by_path["/slack"][1])
        assert slack["channel"] == "#ops"
        assert slack["attachments"][0]["title"] == "[FIRING:1] SizeWise Alert: Hot"
        assert slack["attachments"][0]["text"].startswith("*Hot svc* (critical)")
        assert slack["attachments"][0]["color"] == "danger"
        headers, body = by_path["/hook"]
        headers = {k.lower(): v for k, v in headers.items()}
        assert verify_signature("s3cret", body, headers["x-sizewise-timestamp"],
                                headers["x-sizewise-signature"])
        assert not verify_signature("wrong", body, headers["x-sizewise-timestamp"],
                                    headers["x-sizewise-signature"])
        assert json.loads(body)["alerts"][0]["labels"]["alertname"] == "Hot"
        src.samples = [(CPU, {}, 1.0)]
        await _wait(lambda: len(received) >= 4)
        assert {json.loads(b).get("status") for p, _, b in received[2:] if p == "/hook"} == {"resolved"}
        await _wait(lambda: sum(1 for a, _ in tel.counter.adds) >= 6)
        assert {(a[CHANNEL], a[OUTCOME]) for _, a in tel.counter.adds} == {
            ("log", "success"), ("slack", "success"), ("webhook", "success")}
    finally:
        await ev.shutdown()


async def test_dead_webhook_never_blocks_and_is_counted(webhook_blackhole: str) -> None:
    settings = load_settings(alert_webhook_url=f"{webhook_blackhole}/hook", alert_allow_http_webhooks=True,
                             otel_service_name="svc")
    tel = FakeTelemetry()
    src = Source()
    rule = AlertRule("hot", CPU, ">", 80, 0, AlertSeverity.CRITICAL, "Hot")
    ev = AlertEvaluator(settings, tel, rules=[rule], source=src, interval=3600,  # type: ignore[arg-type]
                        retry=RetryPolicy(attempts=2, backoff_seconds=0.05, timeout_seconds=0.3),
                        queue_size=2)
    await ev.initialize()
    try:
        src.samples = [(CPU, {}, 99.0)]
        started = time.monotonic()
        for i in range(6):  # 6 distinct alert instances while the webhook hangs
            src.samples = [(CPU, {"core": str(i)}, 99.0)]
            await ev.evaluate_once()
        assert time.monotonic() - started < 0.5  # evaluation never waited for the webhook
        # the log channel delivered everything at once
        await _wait(lambda: ev.outcomes[("log", "success")] >= 6, 2)
        # 6 firing + 5 resolved on the webhook lane: 1 in flight, 2 queued, the rest dropped
        assert ev.outcomes[("webhook", "dropped")] >= 1
        await _wait(lambda: ev.outcomes[("webhook", "failure")] >= 1, 5)
        counted = {(a[CHANNEL], a[OUTCOME]) for _, a in tel.counter.adds}
        assert ("webhook", "failure") in counted and ("webhook", "dropped") in counted
    finally:
        t0 = time.monotonic()
        await ev.shutdown()
        assert time.monotonic() - t0 < 5  # shutdown is bounded too


def test_insecure_urls_are_refused_without_opt_in() -> None:
    settings = load_settings(alert_webhook_url="http://example.com/hook",
                             alert_slack_webhook_url="https://hooks.slack.com/services/x")
    ev = AlertEvaluator(settings, FakeTelemetry(), source=Source())  # type: ignore[arg-type]
    assert ev.dispatcher.channels == ["log", "slack"]


# --- HTTP routes -----------------------------------------------------------------------------------

def test_alerts_api_and_alertmanager_relay() -> None:
    import httpx
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sizewise_otel.alerts.notify import WebhookNotifier
    from sizewise_otel.web.auth import KeyRing

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    settings = load_settings(sizewise_api_keys="viewer:v-key,admin:a-key", otel_service_name="svc")
    hook = WebhookNotifier("https://hooks.example/x", "s3cret", transport=httpx.MockTransport(handler))
    ev = AlertEvaluator(settings, FakeTelemetry(), source=Source(), notifiers=[hook])  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await ev.initialize()
        yield
        await ev.shutdown()

    app = FastAPI(lifespan=lifespan)
    app.state.sizewise_keyring = KeyRing(settings)
    app.include_router(ev.router())

    payload = {"version": "4", "status": "firing", "receiver": "sizewise-critical",
               "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate"}}]}
    with TestClient(app) as client:
        assert client.get("/alerts").status_code == 401
        body = client.get("/alerts", headers={"Authorization": "Bearer v-key"}).json()
        assert {"HighCpuUsage", "HighErrorRate"} <= {r["alertname"] for r in body["rules"]}
        assert body["channels"] == ["webhook"]
        assert client.post("/alerts/relay", json=payload,
                           headers={"Authorization": "Bearer v-key"}).status_code == 403
        bad = client.post("/alerts/relay", json={"x": 1}, headers={"Authorization": "Bearer a-key"})
        assert bad.status_code == 400
        ok = client.post("/alerts/relay", json=payload, headers={"Authorization": "Bearer a-key"})
        assert ok.status_code == 202
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    [req] = seen
    assert json.loads(req.content) == payload
    assert verify_signature("s3cret", req.content, req.headers["X-SizeWise-Timestamp"],
                            req.headers["X-SizeWise-Signature"])
