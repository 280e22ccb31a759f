"""The checked-in alerting artifacts pass the real tools: promtool 3.16.0 and amtool 0.31.1, the
builds of scripts/build-servers.sh at the versions compose pins."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests import servers
from tests.tools import built_tool

pytestmark = pytest.mark.integration

ROOT = servers.ROOT
AM_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_promtool_check_rules() -> None:
    promtool = servers.need(built_tool("promtool"), "promtool (scripts/build-servers.sh prometheus)")
    files = sorted(str(p) for p in (ROOT / "prometheus" / "rules").glob("*.yml"))
    assert files
    result = _run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_check_config() -> None:
    """prometheus.yml as compose mounts it (rule files resolved beside it) loads in Prometheus 3."""
    promtool = servers.need(built_tool("promtool"), "promtool (scripts/build-servers.sh prometheus)")
    result = _run(promtool, "check", "config", str(ROOT / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = len(list((ROOT / "prometheus" / "rules").glob("*.yml")))
    assert f"SUCCESS: {rules} rule files found" in result.stdout, result.stdout
    assert "is valid prometheus config file syntax" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = servers.need(built_tool("promtool"), "promtool (scripts/build-servers.sh prometheus)")
    files = sorted(str(p) for p in (ROOT / "prometheus" / "tests").glob("*.yml"))
    assert files
    result = _run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The generated tests are not vacuous: InstanceDown's expectation flipped makes promtool fail."""
    promtool = servers.need(built_tool("promtool"), "promtool (scripts/build-servers.sh prometheus)")
    doc = yaml.safe_load((ROOT / "prometheus" / "tests" / "sizewise-alerts.test.yml").read_text())
    doc["rule_files"] = [str(ROOT / "prometheus" / "rules" / Path(f).name) for f in doc["rule_files"]]
    [case] = [t for t in doc["tests"] if t["name"] == "instance_down"]
    firing = next(c for c in case["alert_rule_test"] if c["exp_alerts"])
    firing["exp_alerts"] = []  # it does fire: promtool must say so
    path = tmp_path / "flipped.test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = _run(promtool, "test", "rules", str(path))
    assert result.returncode != 0 and "InstanceDown" in result.stdout + result.stderr


def test_amtool_check_config() -> None:
    amtool = servers.need(built_tool("amtool"), "amtool (scripts/build-servers.sh alertmanager)")
    result = _run(amtool, "check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout  # the Slack templates were found and parsed


@pytest.mark.parametrize("alertname,severity,receiver", [("HighErrorRate", "critical", "sizewise-critical"),
                                                         ("HighErrorRate", "warning", "sizewise-slack"),
                                                         ("HighErrorRate", "info", "sizewise-webhook"),
                                                         ("HighErrorRate", "", "sizewise-slack"),
                                                         ("InstanceDown", "critical", "sizewise-critical"),
                                                         ("Watchdog", "info", "sizewise-watchdog")])
def test_amtool_routes_by_severity(alertname: str, severity: str, receiver: str) -> None:
    amtool = servers.need(built_tool("amtool"), "amtool (scripts/build-servers.sh alertmanager)")
    labels = [f"alertname={alertname}", "service=sizewise"] + ([f"severity={severity}"] if severity else [])
    result = _run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_config_shape() -> None:
    cfg = yaml.safe_load(AM_CONFIG.read_text())
    route = cfg["route"]
    assert route["group_by"] == ["alertname", "service"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("10s", "10s", "1h")
    [inhibit] = cfg["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert inhibit["equal"] == ["alertname", "job"]
    slack = [s for r in cfg["receivers"] for s in r.get("slack_configs", [])]
    assert slack and all(s["channel"] == "#sizewise-alerts" and s["send_resolved"] for s in slack)
    assert all("api_url" not in s and s["api_url_file"] for s in slack)
    assert all(".Annotations.summary" in Path(ROOT / "alertmanager" / "templates" / "sizewise.tmpl").read_text()
               for _ in slack)
    hooks = [h for r in cfg["receivers"] if r["name"] != "sizewise-watchdog" for h in r.get("webhook_configs", [])]
    assert hooks and all(h["send_resolved"] for h in hooks)
    # The dead man's switch: its own route, first, pinged every 5 minutes, URL from a secret file.
    watchdog = route["routes"][0]
    assert watchdog["matchers"] == ['alertname="Watchdog"'] and watchdog["receiver"] == "sizewise-watchdog"
    assert (watchdog["group_wait"], watchdog["group_interval"], watchdog["repeat_interval"]) == ("0s", "1m", "5m")
    [dms] = [r for r in cfg["receivers"] if r["name"] == "sizewise-watchdog"]
    assert [h["url_file"] for h in dms["webhook_configs"]] == ["/run/secrets/watchdog_url"]
    assert set(dms) == {"name", "webhook_configs"}  # never Slack


def test_rendered_files_are_current() -> None:
    from sizewise_otel.alerts.prometheus_files import render_files

    for rel, content in render_files().items():
        assert (ROOT / rel).read_text() == content, f"{rel}: run `sizewise-otel render`"
