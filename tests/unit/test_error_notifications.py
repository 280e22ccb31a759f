"""Error alerts reach the alert channels (issue 22 item 5): a local webhook receiver on loopback sees
exactly one message per new group, regression and spike (the exact payload), none within the
cooldown, and a dead webhook costs the request path nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from sizewise_otel.alerts.notify import fingerprint, verify_signature
from sizewise_otel.errors import ErrorContext, ErrorTracker
from sizewise_otel.errors.alerts import ALERTNAMES, RUNBOOK_ANCHORS, SpikeDetector
from sizewise_otel.telemetry import get_telemetry
from tests.unit.test_errors_helpers import test_settings

SECRET = "s3cret"
PUBLIC = "https://hvac.example.test"
MINUTE_START = 1_800_000_000.0  # a minute boundary: the spike window is exact with a fixed clock
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _tracker(tmp_path: Path, hook: str, **overrides: Any) -> ErrorTracker:
    settings = test_settings(f"sqlite:///{tmp_path / 'errors.db'}", alert_webhook_url=hook,
                             alert_webhook_secret=SECRET, alert_allow_http_webhooks=True,
                             sizewise_public_url=PUBLIC, otel_service_name="hvac-api", **overrides)
    tracker = ErrorTracker(settings, get_telemetry(settings))
    tracker.alerts.clock = lambda: MINUTE_START + 10
    asyncio.run(tracker.initialize())
    return tracker


def _duct_error(n: int) -> BaseException:
    try:
        raise ValueError(f"duct {n} too small for bob{n}@example.com")
    except ValueError as exc:
        return exc


CTX = ErrorContext(endpoint="/api/hvac/duct/{duct_id}", method="POST")


def _settle(tracker: ErrorTracker) -> None:
    """Everything captured is stored and every signal delivered (or given up)."""
    assert tracker.flush(10)
    assert tracker.notifier is not None and tracker.notifier.drain(10)


def _alerts(received: list[tuple[str, dict[str, str], bytes]]) -> list[dict[str, Any]]:
    out = []
    for path, headers, body in received:
        assert path == "/hook"
        assert verify_signature(SECRET, body, headers["X-SizeWise-Timestamp"], headers["X-SizeWise-Signature"])
        doc = json.loads(body)
        assert len(doc["alerts"]) == 1
        out.append(doc)
    return out


def _expected(kind: str, alertname: str, runbook: str, group_id: str, event_id: str, count: int, summary: str,
              description: str) -> dict[str, Any]:
    labels = {"group_id": group_id, "error_type": "ValueError", "route": "/api/hvac/duct/{duct_id}",
              "error_severity": "high", "kind": kind, "job": "hvac-api", "service": "hvac-api",
              "alertname": alertname, "severity": "warning"}
    error_url = f"{PUBLIC}/errors/{event_id}"
    return {
        "version": "4", "receiver": "sizewise-webhook", "status": "firing", "source": "sizewise-otel",
        "groupLabels": {"alertname": alertname}, "commonLabels": labels,
        "alerts": [{
            "status": "firing", "labels": labels, "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint({k: v for k, v in labels.items() if k not in ("alertname", "severity")}
                                       | {"alertname": alertname}),
            "annotations": {
                "summary": summary, "description": description, "value": str(count), "count": str(count),
                "runbook_url": f"docs/runbooks.md#{runbook}", "dashboard_url": error_url, "error_url": error_url,
                "group_url": f"{PUBLIC}/errors/groups/{group_id}",
            },
        }],
    }


def _without_start(doc: dict[str, Any]) -> dict[str, Any]:
    alert = dict(doc["alerts"][0])
    assert ISO.match(alert.pop("startsAt"))
    return {**doc, "alerts": [alert]}


def test_new_group_then_regression_one_message_each(tmp_path: Path, webhook_receiver: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIZEWISE_RUNBOOK_BASE_URL", raising=False)
    url, received = webhook_receiver
    tracker = _tracker(tmp_path, f"{url}/hook")
    try:
        first = tracker.capture_error(_duct_error(1), CTX, severity="high")
        _settle(tracker)
        group = tracker.store.get_event(first)["group_id"]
        title = "ValueError: duct <int> too small for [email]"
        [new] = _alerts(received)
        assert _without_start(new) == _expected(
            "new_group", "ErrorGroupNew", "newerrorgroup", group, first, 1,
            "New error: ValueError on /api/hvac/duct/{duct_id}", f"{title}. 1 event so far.")

        second = tracker.capture_error(_duct_error(2), CTX, severity="high")  # same group, not new
        _settle(tracker)
        assert len(received) == 1

        tracker.store.set_status(group, "resolved")
        third = tracker.capture_error(_duct_error(3), CTX, severity="high")
        _settle(tracker)
        assert second != third and len(received) == 2
        regression = _alerts(received)[1]
        assert _without_start(regression) == _expected(
            "regression", "ErrorGroupRegressed", "errorgroupregressed", group, third, 3,
            "Resolved error is back: ValueError on /api/hvac/duct/{duct_id}", f"{title}. 3 events so far.")
        # the link in the message answers: GET /errors/<id> is the event of that group
        assert tracker.store.get_event(third)["group_id"] == group
        assert tracker.notify_outcomes == {("webhook", "success"): 2}
    finally:
        asyncio.run(tracker.shutdown())


def test_spike_over_threshold_one_message_none_within_cooldown(tmp_path: Path, webhook_receiver: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIZEWISE_RUNBOOK_BASE_URL", raising=False)
    url, received = webhook_receiver
    tracker = _tracker(tmp_path, f"{url}/hook", sizewise_error_spike_min_events=5,
                       sizewise_error_spike_factor=2.0, sizewise_error_alert_cooldown_minutes=30)
    try:
        ids = [tracker.capture_error(_duct_error(i), CTX, severity="high") for i in range(5)]
        _settle(tracker)
        names = [d["alerts"][0]["labels"]["alertname"] for d in _alerts(received)]
        assert names == ["ErrorGroupNew", "ErrorGroupSpike"]
        spike = _alerts(received)[1]
        group = tracker.store.get_event(ids[-1])["group_id"]
        assert _without_start(spike) == _expected(
            "spike", "ErrorGroupSpike", "errorspike", group, ids[-1], 5,
            "Error spike: ValueError on /api/hvac/duct/{duct_id}",
            "ValueError: duct <int> too small for [email]. "
            "5.0 events in the last minute (baseline 0.0/min), 5 in total.")

        for i in range(20):  # still spiking, within the cooldown: nothing more
            tracker.capture_error(_duct_error(i), CTX, severity="high")
        _settle(tracker)
        assert len(received) == 2
        assert [e["kind"] for e in tracker.alerts.emitted] == ["new_group", "spike"]
    finally:
        asyncio.run(tracker.shutdown())


def test_dead_webhook_is_logged_and_costs_the_request_path_nothing(tmp_path: Path, webhook_blackhole: str) -> None:
    tracker = _tracker(tmp_path, f"{webhook_blackhole}/hook", sizewise_error_alert_timeout_seconds=0.3)
    assert tracker.notifier is not None
    try:
        with structlog.testing.capture_logs() as logs:
            # 150 new groups: 150 signals for a webhook that never answers. The lane holds one in flight
            # and 100 queued; the rest are dropped and counted, nothing waits.
            ids = [tracker.capture_error(_duct_error(i), CTX, fingerprint=["dead-hook", str(i)]) for i in range(150)]
            assert tracker.flush(10)  # the writer is not held up by the hanging delivery
            assert sum(1 for i in ids if tracker.store.get_event(i) is not None) == 150
            _wait(lambda: tracker.notify_outcomes.get(("webhook", "failure"), 0) >= 1)
            assert tracker.notify_outcomes.get(("webhook", "dropped"), 0) >= 1
            assert tracker.notify_outcomes.get(("webhook", "success"), 0) == 0
        failures = [e for e in logs if e["event"] == "alert delivery failed"]
        assert failures and failures[0]["reason"] == "ReadTimeout" and failures[0]["channel"] == "webhook"
        assert "/hook" not in repr(failures)  # the URL is a secret: scheme and host only
    finally:
        asyncio.run(tracker.shutdown())  # bounded: the notifier drains 2 s at most, then stops
    assert tracker.notifier is not None and not tracker.notifier.running


def test_no_channel_configured_means_log_only(tmp_path: Path) -> None:
    settings = test_settings(f"sqlite:///{tmp_path / 'errors.db'}")
    tracker = ErrorTracker(settings, get_telemetry(settings))
    assert tracker.notifier is None  # no Slack or webhook URL: the log line is the channel
    off = test_settings(f"sqlite:///{tmp_path / 'e2.db'}", alert_webhook_url="https://hooks.example/x",
                        sizewise_error_alerts=False)
    assert ErrorTracker(off, get_telemetry(off)).notifier is None


def test_spike_and_cooldown_memory_is_bounded() -> None:
    detector = SpikeDetector(min_events=3, factor=2.0, max_groups=50)
    for g in range(500):
        detector.add(f"g{g}", 1, MINUTE_START)
    assert len(detector) == 50
    # a group that comes back after being forgotten starts from a fresh window
    assert detector.add("g0", 3, MINUTE_START) == {"per_minute": 3.0, "baseline_per_minute": 0.0}


def test_spike_window_slides_across_a_minute_boundary() -> None:
    detector = SpikeDetector(min_events=10, factor=2.0, baseline_minutes=10)
    assert detector.add("g", 6, MINUTE_START - 1) is None  # 6 at the end of one minute
    found = detector.add("g", 5, MINUTE_START + 6)  # 5 more just after: 11 within the last minute
    assert found is not None and found["per_minute"] == pytest.approx(5 + 6 * 0.9)
    # the baseline is the group's own: after 9 a minute for 10 minutes, ~14 in the last minute is
    # over min_events but under factor x baseline (2 x 8.1: the minute before is in the window)
    steady = SpikeDetector(min_events=10, factor=2.0, baseline_minutes=10)
    for m in range(10):
        assert steady.add("g", 9, MINUTE_START + 60 * m + 59) is None
    assert steady.add("g", 5, MINUTE_START + 600 + 1) is None
    burst = steady.add("g", 30, MINUTE_START + 600 + 1)
    assert burst is not None and burst["per_minute"] == pytest.approx(43.85, abs=0.06)
    assert burst["baseline_per_minute"] == 8.1


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_every_error_alert_links_to_its_own_runbook_section() -> None:
    """``runbook_url`` of ErrorGroupNew / ErrorGroupRegressed / ErrorGroupSpike: a section that exists,
    one per alert (a regression is not a new group)."""
    runbooks = (Path(__file__).resolve().parents[2] / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbooks, re.M)}
    assert set(RUNBOOK_ANCHORS) == set(ALERTNAMES)
    assert len(set(RUNBOOK_ANCHORS.values())) == len(RUNBOOK_ANCHORS)
    assert {k: a for k, a in RUNBOOK_ANCHORS.items() if a not in anchors} == {}
    assert RUNBOOK_ANCHORS["regression"] == ALERTNAMES["regression"].lower()
