"""``validate --prometheus --alertmanager`` against a real Prometheus scraping the demo (with the
generated rules) and a real Alertmanager running a test copy of alertmanager/alertmanager.yml."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sizewise_otel.validate import validate
from sizewise_otel.validate.model import Status, score
from sizewise_otel.validate.report import table
from tests import servers
from tests.apprunner import run_demo
from tests.integration.test_validate_demo import ADMIN, KEYS, wait_for_traffic

pytestmark = pytest.mark.integration

ROOT = servers.ROOT
JOB = "sizewise-direct"


def alertmanager_test_config(tmp: Path, sink_port: int) -> Path:
    """The checked-in config; only secret-file paths and the relay URL point into ``tmp``."""
    slack_url = tmp / "slack_webhook_url"
    slack_url.write_text(f"http://127.0.0.1:{sink_port}/slack\n")
    relay_key = tmp / "relay_key"
    relay_key.write_text(ADMIN + "\n")
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if "api_url_file" in out:
                out["api_url_file"] = str(slack_url)
            if "credentials_file" in out:
                out["credentials_file"] = str(relay_key)
            if "url" in out and isinstance(out["url"], str) and "send_resolved" in out:
                out["url"] = f"http://127.0.0.1:{sink_port}/relay"
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    config = walk(config)
    templates = ROOT / "alertmanager" / "templates"
    if templates.exists():
        shutil.copytree(templates, tmp / "templates")
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_test_config(tmp: Path, app_port: int, am_port: int) -> Path:
    rules = []
    for src in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        shutil.copy(src, tmp / src.name)
        rules.append(str(tmp / src.name))
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": rules,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_validate_with_prometheus_and_alertmanager() -> None:
    tmp = servers.tempdir("validate-stack")
    sink_port = servers.free_port()  # nothing listens: a notification would fail, on loopback
    am = servers.alertmanager_server(alertmanager_test_config(tmp, sink_port))
    am.start()
    prom = None
    try:
        with run_demo(env={"SIZEWISE_API_KEYS": KEYS}, args=["--load"]) as app:
            app_port = int(app.url.rsplit(":", 1)[1])
            prom = servers.prometheus_server(prometheus_test_config(tmp, app_port, am.port)).start()
            wait_for_traffic(app.url)

            def scraped() -> bool:
                r = httpx.get(f"{prom.url}/api/v1/query", params={
                    "query": "count_over_time(sizewise_health_status[1m])"}, timeout=2).json()
                return bool(r["data"]["result"]) and float(r["data"]["result"][0]["value"][1]) >= 8

            servers.wait_for(scraped, 60, "Prometheus scraping the demo")
            time.sleep(2)  # a few rule evaluations
            results, _ = validate(app.url, api_key=ADMIN, prometheus=prom.url, alertmanager=am.url)
            text = table(results, url=app.url, min_score=90)
            print(text)
            by_name = {r.name: r for r in results}
            for name in ("alert rules loaded in Prometheus", "Prometheus scrapes the service",
                         "catalog series in Prometheus", "Prometheus sends alerts to an Alertmanager",
                         "Alertmanager config loaded", "Alertmanager has a routed Slack receiver"):
                assert by_name[name].status is Status.PASS, (name, by_name[name])
            panels = by_name["Grafana panel queries return data (Prometheus)"]
            assert panels.status is not Status.FAIL, panels  # no query rejected by Prometheus
            assert panels.details["queries"] > 20 and not panels.details["errors"]
            print("panels without data:", panels.details["empty"])
            assert not any(r.status is Status.SKIP for r in results if r.category == "alerting")
            assert score(results) >= 90, text
    finally:
        if prom is not None:
            prom.stop()
        am.stop()
        shutil.rmtree(tmp, ignore_errors=True)
