"""Notifiers: Slack format, signatures, URL policy, retry with backoff."""

from __future__ import annotations

import json

import httpx
import pytest

from sizewise_otel.alerts.notify import (
    Notification,
    RetryPolicy,
    SlackNotifier,
    WebhookNotifier,
    check_url,
    redact_url,
    sign,
    slack_payload,
    verify_signature,
)


def _notification(status: str = "firing") -> Notification:
    return Notification("HighErrorRate", status, "critical", {"job": "api", "service": "api"},
                        {"summary": "High error rate on api", "description": "Too many 5xx.",
                         "value": "12.5%", "runbook_url": "https://r/#higherrorrate",
                         "dashboard_url": "http://localhost:3000/d/x"}, 12.5, 0.0)


def test_slack_payload_matches_the_alertmanager_template() -> None:
    payload = slack_payload("#sizewise-alerts", [_notification().as_alertmanager()], "firing")
    att = payload["attachments"][0]
    assert payload["channel"] == "#sizewise-alerts"
    assert att["title"] == "[FIRING:1] SizeWise Alert: HighErrorRate"
    assert att["color"] == "danger"
    assert att["text"] == ("*High error rate on api* (critical)\nToo many 5xx. Value: 12.5%.\n"
                           "<https://r/#higherrorrate|Runbook> | <http://localhost:3000/d/x|Dashboard>")
    resolved = slack_payload("#c", [_notification("resolved").as_alertmanager()], "resolved")
    assert resolved["attachments"][0]["title"] == "[RESOLVED] SizeWise Alert: HighErrorRate"
    assert resolved["attachments"][0]["color"] == "good"
    assert "Value" not in resolved["attachments"][0]["text"]


def test_signature_round_trip_and_tamper() -> None:
    body = b'{"a": 1}'
    sig = sign("s3cret", body, 1_700_000_000)
    assert sig.startswith("sha256=")
    assert verify_signature("s3cret", body, "1700000000", sig, now=1_700_000_010)
    assert not verify_signature("s3cret", body + b" ", "1700000000", sig, now=1_700_000_010)
    assert not verify_signature("other", body, "1700000000", sig, now=1_700_000_010)
    assert not verify_signature("s3cret", body, "1700000000", sig, now=1_700_009_999)  # replayed


def test_url_policy_and_redaction() -> None:
    assert check_url("https://hooks.slack.com/services/T/B/X", allow_http=False) is None
    assert "https" in (check_url("http://example.com/hook", allow_http=False) or "")
    assert check_url("http://127.0.0.1:9/hook", allow_http=True) is None
    assert check_url("ftp://x/y", allow_http=True)
    assert redact_url("https://hooks.slack.com/services/T000/B000/XXXX?token=1") == "https://hooks.slack.com/…"


async def test_retries_with_backoff_then_succeeds() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503 if len(calls) < 3 else 200)

    n = SlackNotifier("https://hooks.example/x", "#c", retry=RetryPolicy(3, 0.001, 0.01, 1),
                      transport=httpx.MockTransport(handler))
    assert await n.send(_notification())
    assert len(calls) == 3
    assert json.loads(calls[0].content)["channel"] == "#c"
    await n.aclose()


async def test_client_errors_are_not_retried_and_fail() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404)

    n = WebhookNotifier("https://hooks.example/x", retry=RetryPolicy(5, 0.001, 0.01, 1),
                        transport=httpx.MockTransport(handler))
    assert not await n.send(_notification())
    assert len(calls) == 1
    await n.aclose()


async def test_webhook_body_is_signed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    n = WebhookNotifier("https://hooks.example/x", "k", clock=lambda: 1_000.0,
                        transport=httpx.MockTransport(handler))
    assert await n.send(_notification())
    req = seen[0]
    assert verify_signature("k", req.content, req.headers["X-SizeWise-Timestamp"],
                            req.headers["X-SizeWise-Signature"], now=1_000.0)
    doc = json.loads(req.content)
    assert doc["status"] == "firing" and doc["alerts"][0]["labels"]["alertname"] == "HighErrorRate"
    await n.aclose()


@pytest.mark.parametrize("status,severity,color", [("firing", "warning", "warning"),
                                                   ("firing", "info", "#439FE0")])
def test_colours(status: str, severity: str, color: str) -> None:
    alert = {"status": status, "labels": {"alertname": "A", "severity": severity}, "annotations": {}}
    assert slack_payload("#c", [alert], status)["attachments"][0]["color"] == color
