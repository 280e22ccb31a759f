"""The checked-in alerting artifacts pass the real tools: promtool and amtool (Debian's 0.25)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests import servers

pytestmark = pytest.mark.integration

ROOT = servers.ROOT
AM_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_promtool_check_rules() -> None:
    promtool = servers.need("promtool", "promtool (Debian package prometheus)")
    files = sorted(str(p) for p in (ROOT / "prometheus" / "rules").glob("*.yml"))
    assert files
    result = _run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = servers.need("promtool", "promtool (Debian package prometheus)")
    files = sorted(str(p) for p in (ROOT / "prometheus" / "tests").glob("*.yml"))
    assert files
    result = _run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config() -> None:
    amtool = servers.need("amtool", "amtool (Debian package prometheus-alertmanager)")
    result = _run(amtool, "check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout  # the Slack templates were found and parsed


@pytest.mark.parametrize("severity,receiver", [("critical", "sizewise-critical"),
                                               ("warning", "sizewise-slack"),
                                               ("info", "sizewise-webhook"),
                                               ("", "sizewise-slack")])
def test_amtool_routes_by_severity(severity: str, receiver: str) -> None:
    amtool = servers.need("amtool", "amtool (Debian package prometheus-alertmanager)")
    labels = ["alertname=HighErrorRate", "service=sizewise"] + ([f"severity={severity}"] if severity else [])
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
    hooks = [h for r in cfg["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks and all(h["send_resolved"] for h in hooks)


def test_rendered_files_are_current() -> None:
    from sizewise_otel.alerts.render import render_files

    for rel, content in render_files().items():
        assert (ROOT / rel).read_text() == content, f"{rel}: run `sizewise-otel render`"
