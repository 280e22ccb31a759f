"""The collector-less path: the real app pushes OTLP metrics into Prometheus 3's own OTLP receiver.

Prometheus runs prometheus/prometheus-otlp.yml (the file compose.otlp-direct.yaml mounts) with the
repo's rule files and ``--web.enable-otlp-receiver``; the demo pushes with the standard per-signal
variables the override sets. The series names, ``job`` and ``instance`` labels must be the ones the
collector path gives, so the same dashboards and rules serve both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests import stack
from tests.apprunner import RunningApp, parse_samples, run_demo
from tests.servers import Server, prometheus_server, tempdir, wait_for

pytestmark = pytest.mark.integration

JOB = "sizewise/sizewise-hvac"  # service.namespace/service.name, as behind the collector
# Gauges of unit "1": Prometheus's OTLP translation appends `_ratio`, as the collector's exporter does;
# on the collector path prometheus.yml's metric_relabel_configs drops it, which OTLP ingestion cannot.
RATIO_SUFFIXED = {"system_cpu_utilization", "system_memory_utilization", "process_cpu_utilization"}


@pytest.fixture(scope="module")
def prom() -> Iterator[Server]:
    config = stack.prometheus_test_config({}, path=stack.PROMETHEUS_OTLP_CONFIG.path)
    config["otlp"] = yaml.safe_load((stack.ROOT / stack.PROMETHEUS_OTLP_CONFIG.path).read_text())["otlp"]
    srv = prometheus_server(stack.write_yaml(config, tempdir("prom-otlp") / "prometheus.yml"),
                            [*stack.prometheus_flags(), "--web.enable-otlp-receiver"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def app(prom: Server) -> Iterator[RunningApp]:
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{prom.url}/api/v1/otlp/v1/metrics",
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
           "OTEL_SERVICE_NAME": "sizewise-hvac", "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=sizewise"}
    with run_demo(env=env, args=["--load", "--load-rate", "40"]) as running:
        yield running


def client_library_names() -> set[str]:
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return {s.name for family in registry.collect() for s in family.samples}


def query(prom: Server, expr: str) -> list[dict]:
    body = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def test_the_rule_files_load_on_the_otlp_config(prom: Server) -> None:
    groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 30
    assert [r["name"] for r in rules if r.get("health") == "err"] == []


def test_one_instance_with_the_collector_paths_job_and_instance(prom: Server, app: RunningApp) -> None:
    def one_instance() -> bool:
        return len(query(prom, f'target_info{{job="{JOB}"}}')) == 1

    wait_for(one_instance, 60, "target_info from the OTLP push")
    info = query(prom, f'target_info{{job="{JOB}"}}')[0]["metric"]
    # instance is service.instance.id, as the collector's exporter labels it: a per-process UUID.
    assert re.fullmatch(r"[0-9a-f-]{36}", info["instance"]), info

    def requests_counted() -> bool:
        rate = query(prom, f'sum(rate(http_server_request_duration_seconds_count{{job="{JOB}"}}[30s]))')
        return bool(rate) and float(rate[0]["value"][1]) > 0

    wait_for(requests_counted, 60, "request rate over the OTLP path")


def test_the_same_metric_names_as_the_app_serves(prom: Server, app: RunningApp) -> None:
    served = {name for name, _, _ in parse_samples(app.metrics_text())}
    # /metrics also serves prometheus_client's own process/platform/GC collectors: not OTel data, on
    # neither push path.
    served -= client_library_names()

    def ingested() -> set[str]:
        names = httpx.get(f"{prom.url}/api/v1/label/__name__/values", params={"match[]": f'{{job="{JOB}"}}'},
                          timeout=10).json()["data"]
        return {n.removesuffix("_ratio") if n.removesuffix("_ratio") in RATIO_SUFFIXED else n for n in names}

    missing: set[str] = set()

    def all_there() -> bool:
        nonlocal missing
        missing = served - ingested()
        return not missing

    try:
        wait_for(all_there, 60, "every served metric name in Prometheus")
    except TimeoutError:
        pytest.fail(f"names the app serves but the OTLP path did not bring: {sorted(missing)}")
