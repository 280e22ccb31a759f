"""End to end with real binaries: an instrumented FastAPI app answering 500s, Prometheus with the
generated rules, Alertmanager with the checked-in config, and a local HTTP server standing in for
Slack (and for the generic webhook the app relays to). The Slack JSON is asserted exactly, when
HighErrorRate fires and when it resolves.

The Prometheus and Alertmanager configs are test copies derived from the checked-in files: only
intervals, ``for`` durations (divided by 20), URLs and secret-file paths are overridden.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sizewise_otel.alerts.notify import slack_payload, verify_signature
from sizewise_otel.alerts.rules import DEFAULT_RULES
from tests import servers, webhook
from tests.ha import fast_rule_files

pytestmark = pytest.mark.integration

ROOT = servers.ROOT
JOB = "sizewise"
SECRET = "e2e-webhook-secret"
RELAY_KEY = "e2e-relay-admin-key"

APP = """
import sys
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
import sizewise_otel

app = FastAPI()


@app.get("/api/hvac/calculate")
def calculate(fail: int = 0):
    if fail:
        return JSONResponse({"error": "calculation failed"}, status_code=500)
    return {"cfm": 1200}


sizewise_otel.instrument(app)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def prometheus_config(tmp: Path, app_port: int, am_port: int) -> Path:
    base_path = ROOT / "prometheus" / "prometheus.yml"
    base = yaml.safe_load(base_path.read_text()) if base_path.exists() else {}
    cfg = {
        "global": {**(base.get("global") or {}), "scrape_interval": "1s", "evaluation_interval": "1s",
                   "scrape_timeout": "1s"},
        "rule_files": fast_rule_files(tmp),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def alertmanager_config(tmp: Path, slack_url: str, relay_url: str, watchdog_url: str) -> Path:
    cfg = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    (tmp / "slack_webhook_url").write_text(slack_url + "\n")
    (tmp / "relay_key").write_text(RELAY_KEY + "\n")
    cfg["templates"] = [str(ROOT / "alertmanager" / t) for t in cfg["templates"]]
    cfg["route"].update(group_wait="1s", group_interval="1s")
    for receiver in cfg["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack, "the Slack URL must come from a file"
            slack["api_url_file"] = str(tmp / "slack_webhook_url")
        for hook in receiver.get("webhook_configs", []):
            if "url_file" in hook:  # the Watchdog's dead man's switch: its URL is a secret file too
                (tmp / "watchdog_url").write_text(watchdog_url + "\n")
                hook["url_file"] = str(tmp / "watchdog_url")
                continue
            hook["url"] = relay_url
            hook["http_config"]["authorization"]["credentials_file"] = str(tmp / "relay_key")
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _slack_messages(received: list[Any], status: str) -> list[dict[str, Any]]:
    out = []
    for path, _, body in list(received):
        if path != "/slack":
            continue
        doc = json.loads(body)
        title = doc["attachments"][0]["title"]
        if re.search(r"\bHighErrorRate$", title) and title.startswith(f"[{status.upper()}"):
            out.append(doc)
    return out


class Load:
    """Requests in a background thread: failing ones, then successful ones."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fail = True
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{self.url}/api/hvac/calculate", params={"fail": int(self.fail)})
                if self.fail:
                    time.sleep(0.2)  # few errors, so successes soon outweigh them


def _wait(predicate: Any, timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; the seconds it took (fails after ``timeout``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting {timeout:g} s for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


# Deadlines only: scrapes, rule evaluations and group waits are 1 s each, a `for` of a minute is 3 s
# here; these leave room for a loaded machine, and the time taken is printed, not asserted.
FIRING_DEADLINE = RESOLVED_DEADLINE = 120.0


def test_high_error_rate_reaches_slack_firing_then_resolved() -> None:
    tmp = servers.tempdir("alerting-e2e")
    rule = next(r for r in DEFAULT_RULES if r.name == "high_error_rate")
    with webhook.receiver() as (sink_url, received):
        app_port = servers.free_port()
        am = servers.alertmanager_server(
            alertmanager_config(tmp, f"{sink_url}/slack", f"http://127.0.0.1:{app_port}/alerts/relay",
                                f"{sink_url}/watchdog"))
        prom = servers.prometheus_server(prometheus_config(tmp, app_port, am.port))
        # Server runs it in the test's environment cleaned of SizeWise/OTel settings, plus these
        env = dict(
            PROMETHEUS_URL=prom.url,  # full stack: Prometheus/Alertmanager alert, not the app
            SIZEWISE_API_KEYS=f"admin:{RELAY_KEY}",
            ALERT_WEBHOOK_URL=f"{sink_url}/hook", ALERT_WEBHOOK_SECRET=SECRET,
            ALERT_ALLOW_HTTP_WEBHOOKS="true", OTEL_SERVICE_NAME="sizewise-hvac",
            ERROR_TRACKING_ENABLED="false", HEALTH_MONITORING_ENABLED="false",
            PERFORMANCE_DASHBOARD_ENABLED="false", DATABASE_URL=f"sqlite:///{tmp / 'app.db'}",
        )
        app = servers.Server("sizewise-app", app_port, tmp, [sys.executable, "-c", APP, str(app_port)],
                             tmp / "app.log", env=env)
        load = Load(app.url)
        try:
            app.start()
            am.start()
            prom.start()
            load.thread.start()
            firing_after = _wait(lambda: _slack_messages(received, "firing"), FIRING_DEADLINE,
                                 "the firing Slack message")
            load.fail = False  # successes from now on: the error rate falls under 5 %
            resolved_after = _wait(lambda: _slack_messages(received, "resolved"), RESOLVED_DEADLINE,
                                   "the resolved Slack message")
            print(f"\nfiring after {firing_after:.1f} s of errors, resolved {resolved_after:.1f} s later")
        finally:
            load.stop.set()
            for srv in (prom, am, app):
                srv.stop()
            for path in (prom.workdir, am.workdir, tmp):
                shutil.rmtree(path, ignore_errors=True)

        # the rule sums over the job's instances: no instance label
        labels = {"alertname": "HighErrorRate", "job": JOB, "service": JOB, "severity": "critical"}
        # Only 500s before it fired, so the value is 100 %, or a little less when Prometheus
        # scraped while a request was in flight (counted in total, not yet in errors).
        first = _slack_messages(received, "firing")[0]["attachments"][0]["text"]
        value = float(re.search(r"Value: ([0-9.]+)%", first).group(1))  # type: ignore[union-attr]
        assert 90 <= value <= 100
        annotations = rule.annotations(labels, value)
        for status in ("firing", "resolved"):
            [got] = _slack_messages(received, status)
            want = slack_payload("#sizewise-alerts", [{"status": status, "labels": labels,
                                                       "annotations": annotations}], status)
            assert got["channel"] == want["channel"] == "#sizewise-alerts"
            assert got["username"] == want["username"]
            got_att, want_att = got["attachments"][0], want["attachments"][0]
            for key in ("title", "title_link", "text", "fallback", "color"):
                assert got_att[key] == want_att[key], key
        firing = _slack_messages(received, "firing")[0]["attachments"][0]
        assert firing["title"] == "[FIRING:1] SizeWise Alert: HighErrorRate"
        assert firing["color"] == "danger"
        assert firing["text"] == (
            f"*High error rate on {JOB}* (critical)\n"
            f"High error rate detected. More than 5% of HTTP requests to {JOB} (all instances) answered "
            f"5xx over the last 5 minutes. Value: {value:.1f}%.\n"
            f"<{rule.runbook_url}|Runbook> | <http://localhost:3000/d/sizewise-application-performance|Dashboard>")
        resolved = _slack_messages(received, "resolved")[0]["attachments"][0]
        assert resolved["title"] == "[RESOLVED] SizeWise Alert: HighErrorRate"
        assert resolved["color"] == "good"

        # Alertmanager's webhook went through the app's relay to ALERT_WEBHOOK_URL, signed.
        hooks = [({k.lower(): v for k, v in h.items()}, b) for p, h, b in received if p == "/hook"]
        relayed = [json.loads(b) for h, b in hooks
                   if json.loads(b).get("commonLabels", {}).get("alertname") == "HighErrorRate"]
        assert {d["status"] for d in relayed} >= {"firing"}
        assert relayed[0]["receiver"] == "sizewise-critical"
        for headers, body in hooks:
            assert verify_signature(SECRET, body, headers["x-sizewise-timestamp"],
                                    headers["x-sizewise-signature"])
