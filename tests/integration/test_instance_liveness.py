"""A dead app instance alerts on the push path, end to end with the real binaries.

Two ``sizewise-otel demo`` processes push OTLP through the built collector (a copy of
collector/config.yaml: compose's ``metric_expiration``) at compose's export interval; Prometheus
3.16.0 scrapes the collector and evaluates the checked-in rule files; Alertmanager 0.31.1 runs
alertmanager/alertmanager.yml with its Slack, relay and dead man's switch URLs pointed at a local
HTTP sink. SIGKILL one demo: InstanceDown naming the service and the lost instance reaches Slack;
SIGKILL the other: ServiceAbsent; start two new processes (new instance ids, as a real restart
gives): both resolve. The Watchdog reaches only its own receiver.

Only the scrape and evaluation intervals are shorter than compose's (1 s instead of 10 s / 15 s), so
each measured kill -> Slack time is compose's minus at most 9 + 2 x 14 = 37 s; the deadline keeps
compose's 5 minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sizewise_otel.alerts.notify import slack_payload
from sizewise_otel.alerts.rules import DEFAULT_RULES, INSTANCES_STABLE
from tests import ha, servers, stack
from tests.multiapp import MultiApp

pytestmark = pytest.mark.integration

ROOT = servers.ROOT
COMPOSE_SLOWER_BY = (10 - 1) + 2 * (15 - 1)  # compose's scrape and two rule evaluations vs 1 s here
DEADLINE = 300 - COMPOSE_SLOWER_BY
RULES = {r.name: r for r in DEFAULT_RULES}
Received = list[tuple[str, bytes]]


def alertmanager_config(tmp: Path, sink_url: str) -> Path:
    """alertmanager/alertmanager.yml with its secret files and the relay URL on loopback; nothing else."""
    cfg = stack.load_yaml("alertmanager/alertmanager.yml")
    secrets = {"slack_webhook_url": f"{sink_url}/slack", "watchdog_url": f"{sink_url}/watchdog",
               "sizewise_relay_api_key": "relay-key"}
    for name, value in secrets.items():
        (tmp / name).write_text(value + "\n")

    def local(path: str) -> str:  # YAML aliases share one dict: a path may be rewritten already
        if path.startswith(str(tmp)):
            return path
        assert path.startswith("/run/secrets/"), path
        return str(tmp / path.removeprefix("/run/secrets/"))

    cfg["templates"] = [str(ROOT / "alertmanager" / t) for t in cfg["templates"]]
    for receiver in cfg["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = local(slack["api_url_file"])
        for hook in receiver.get("webhook_configs", []):
            if "url_file" in hook:
                hook["url_file"] = local(hook["url_file"])
            elif hook["url"] != f"{sink_url}/hook":
                hook["url"] = f"{sink_url}/hook"
                auth = hook["http_config"]["authorization"]
                auth["credentials_file"] = local(auth["credentials_file"])
    return stack.write_yaml(cfg, tmp / "alertmanager.yml")


def compose_export_interval() -> str:
    return str(stack.compose()["services"]["app"]["environment"]["OTEL_METRIC_EXPORT_INTERVAL"])


def collector_expiration() -> str:
    return str(stack.load_yaml(stack.COLLECTOR_CONFIG.path)["exporters"]["prometheus"]["metric_expiration"])


def slack(received: Received, status: str, alertname: str) -> list[dict[str, Any]]:
    title = f"[{status.upper()}"
    out = []
    for path, body in list(received):
        if path == "/slack":
            doc = json.loads(body)
            att = doc["attachments"][0]
            if att["title"].startswith(title) and att["title"].endswith(f"SizeWise Alert: {alertname}"):
                out.append(doc)
    return out


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return found


def expected(rule: str, status: str, labels: list[dict[str, str]], value: float) -> dict[str, Any]:
    r = RULES[rule]
    alerts = [{"status": status, "labels": {**lb, "alertname": r.alertname, "severity": str(r.severity),
                                            "service": lb["job"]},
               "annotations": r.annotations(lb, value)} for lb in labels]
    return slack_payload("#sizewise-alerts", alerts, status)


def assert_slack(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["channel"] == want["channel"] and got["username"] == want["username"]
    for key in ("title", "title_link", "text", "fallback", "color"):
        assert got["attachments"][0][key] == want["attachments"][0][key], key


def test_killed_instance_then_service_alert_and_resolve() -> None:
    tmp = servers.tempdir("liveness")
    with ha.sink() as found:
        sink_url, received = found.url, found.received
        am = servers.alertmanager_server(alertmanager_config(tmp, sink_url))
        am.start()
        try:
            with MultiApp(2, env={"OTEL_METRIC_EXPORT_INTERVAL": compose_export_interval()},
                          metric_expiration=collector_expiration(),
                          alertmanager=f"127.0.0.1:{am.port}") as apps:
                run_scenario(apps, received)
        finally:
            am.stop()


def run_scenario(apps: MultiApp, received: Received) -> None:
    job, (first, second) = apps.job, list(apps.instance_ids)
    # The expected size (2) is what the service held steadily; until then a loss is not a loss.
    wait(lambda: apps.value(f'{INSTANCES_STABLE}{{job="{job}"}}') == 2, 300, "2 instances held steadily")
    assert not slack(received, "firing", "InstanceDown") and not slack(received, "firing", "ServiceAbsent")

    # The Watchdog is alive, and only at its own receiver.
    pings = wait(lambda: [json.loads(b) for p, b in list(received) if p == "/watchdog"], 60, "a Watchdog ping")
    assert pings[0]["receiver"] == "sizewise-watchdog"
    assert [a["labels"]["alertname"] for a in pings[0]["alerts"]] == ["Watchdog"]
    assert not slack(received, "firing", "Watchdog")

    apps.kill(0)
    killed = time.monotonic()
    [down] = wait(lambda: slack(received, "firing", "InstanceDown"), DEADLINE, "InstanceDown in Slack")
    took_down = time.monotonic() - killed
    assert_slack(down, expected("instance_down", "firing", [{"job": job, "instance": first}], 1))
    assert down["attachments"][0]["text"].startswith(f"*{job} lost instance {first}* (critical)\n")
    assert not slack(received, "firing", "ServiceAbsent")
    relayed = [json.loads(b) for p, b in list(received) if p == "/hook"]
    assert any(d["commonLabels"].get("alertname") == "InstanceDown" for d in relayed)  # critical: relay too

    apps.kill(1)
    killed = time.monotonic()
    [absent] = wait(lambda: slack(received, "firing", "ServiceAbsent"), DEADLINE, "ServiceAbsent in Slack")
    took_absent = time.monotonic() - killed
    assert_slack(absent, expected("service_absent", "firing", [{"job": job}], 2))
    wait(lambda: [m for m in slack(received, "firing", "InstanceDown")
                  if m["attachments"][0]["title"].startswith("[FIRING:2]")], 60, "both instances down")
    assert not slack(received, "resolved", "InstanceDown") and not slack(received, "resolved", "ServiceAbsent")

    # A restarted process gets a new service.instance.id: the replacements resolve both alerts.
    apps.restart(0)
    restarted = time.monotonic()
    apps.restart(1)
    assert not {first, second} & set(apps.instance_ids)
    [gone] = wait(lambda: slack(received, "resolved", "ServiceAbsent"), 120, "ServiceAbsent resolved")
    [back] = wait(lambda: slack(received, "resolved", "InstanceDown"), 120, "InstanceDown resolved")
    took_resolved = time.monotonic() - restarted
    assert_slack(gone, expected("service_absent", "resolved", [{"job": job}], 2))
    # Alertmanager lists a group's alerts ordered by job, then instance (its AlertSlice order).
    lost = sorted([{"job": job, "instance": first}, {"job": job, "instance": second}], key=lambda a: a["instance"])
    assert_slack(back, expected("instance_down", "resolved", lost, 1))
    print(f"\nkill -> InstanceDown in Slack {took_down:.0f} s, kill all -> ServiceAbsent {took_absent:.0f} s, "
          f"restart -> both resolved {took_resolved:.0f} s (metric_expiration {collector_expiration()}, "
          f"export every {int(compose_export_interval()) // 1000} s, 1 s scrape/evaluation: "
          f"compose adds up to {COMPOSE_SLOWER_BY} s)")
    assert not slack(received, "firing", "Watchdog")
