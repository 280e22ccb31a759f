"""The HA stack's configs stay in step with the single-node ones they extend (issue 21).

prometheus/prometheus-ha.yml repeats prometheus.yml's jobs and rules with the HA differences;
collector/ha/agent.yaml is merged over collector/config.yaml; collector/ha/gateway.yaml samples on the
latency SLO the generated rules use; each builder manifest holds every component its configs name.
"""

from __future__ import annotations

import copy

import yaml

from sizewise_otel.alerts.rules import SLO_LATENCY_SECONDS
from tests import stack

HA = stack.load_yaml("prometheus/prometheus-ha.yml")
SINGLE = stack.load_yaml("prometheus/prometheus.yml")
_MODULE_OF = {"otlp_grpc": "otlpexporter", "otlp": "otlpexporter"}


def _without_targets(job: dict) -> dict:
    job = copy.deepcopy(job)
    job.pop("static_configs", None)
    return job


def test_prometheus_pair_runs_the_single_node_jobs_and_rules() -> None:
    assert HA["rule_files"] == SINGLE["rule_files"]
    assert [j["job_name"] for j in HA["scrape_configs"]] == [j["job_name"] for j in SINGLE["scrape_configs"]]
    for ha_job, job in zip(HA["scrape_configs"], SINGLE["scrape_configs"], strict=True):
        assert _without_targets(ha_job) == _without_targets(job), job["job_name"]
    for key in ("scrape_interval", "evaluation_interval"):
        assert HA["global"][key] == SINGLE["global"][key]
    assert HA["global"]["external_labels"] == {**SINGLE["global"]["external_labels"],
                                               "replica": "${PROMETHEUS_REPLICA}"}


def test_replica_label_is_dropped_for_alerts_and_remote_write() -> None:
    drop = {"action": "labeldrop", "regex": "replica"}
    assert drop in HA["alerting"]["alert_relabel_configs"]
    # The store keeps series as Prometheus holds them locally: no external label at all.
    for rw in HA["remote_write"]:
        dropped = {label for r in rw["write_relabel_configs"] if r["action"] == "labeldrop"
                   for label in r["regex"].split("|")}
        assert dropped == set(HA["global"]["external_labels"]), dropped
    # every peer of the Alertmanager cluster, never one address in front of them
    [am] = HA["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == [f"alertmanager-{i}:9093" for i in (1, 2, 3)]


def test_agent_only_reroutes_traces() -> None:
    agent = stack.load_yaml("collector/ha/agent.yaml")
    assert set(agent) == {"exporters", "service"}
    assert agent["service"] == {"pipelines": {"traces": {"exporters": ["loadbalancing"]}}}
    lb = agent["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "traceID"
    assert len(lb["resolver"]["static"]["hostnames"]) >= 2


def test_gateway_keeps_errors_slow_traces_and_ten_percent() -> None:
    gateway = stack.load_yaml("collector/ha/gateway.yaml")
    policies = {p["type"]: p for p in gateway["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == int(float(SLO_LATENCY_SECONDS) * 1000)
    assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == 10
    assert gateway["service"]["pipelines"]["traces"]["processors"] == [
        "memory_limiter", "tail_sampling", "batch"]


def _modules(manifest: str) -> set[str]:
    doc = yaml.safe_load((stack.ROOT / manifest).read_text())
    return {m["gomod"].split()[0].rsplit("/", 1)[1]
            for kind in ("receivers", "processors", "exporters", "extensions") for m in doc[kind]}


def _components(*configs: dict) -> set[str]:
    out = set()
    for cfg in configs:
        for kind in ("receivers", "processors", "exporters", "extensions"):
            for comp in cfg.get(kind) or {}:
                ctype = comp.split("/")[0]
                out.add(_MODULE_OF.get(ctype, ctype.replace("_", "") + kind[:-1]))
    return out


def test_builder_manifests_hold_every_component() -> None:
    base = stack.load_yaml("collector/config.yaml")
    gateway = stack.load_yaml("collector/ha/gateway.yaml")
    agent = stack.load_yaml("collector/ha/agent.yaml")
    assert _components(base, agent, gateway) <= _modules("collector/builder-config-ha.yaml")
    # The single-node components are all there too (the agent runs collector/config.yaml).
    assert _modules("collector/builder-config.yaml") <= _modules("collector/builder-config-ha.yaml")
    # one release throughout the HA manifest
    doc = yaml.safe_load((stack.ROOT / "collector/builder-config-ha.yaml").read_text())
    versions = {m["gomod"].split()[1] for kind in ("receivers", "processors", "exporters", "extensions")
                for m in doc[kind]}
    assert versions == {f"v{doc['dist']['version']}"}


def test_k8s_pair_config_differs_from_compose_only_in_addresses() -> None:
    k8s = stack.load_yaml("k8s/overlays/production/prometheus-ha.yml")
    for key in ("global", "rule_files"):
        assert k8s[key] == HA[key], key
    assert k8s["alerting"]["alert_relabel_configs"] == HA["alerting"]["alert_relabel_configs"]
    for rw, rw_compose in zip(k8s["remote_write"], HA["remote_write"], strict=True):
        assert {**rw, "url": None} == {**rw_compose, "url": None}
    assert [j["job_name"] for j in k8s["scrape_configs"]] == [j["job_name"] for j in HA["scrape_configs"]]
    for job, job_compose in zip(k8s["scrape_configs"], HA["scrape_configs"], strict=True):
        strip = ("static_configs", "dns_sd_configs")
        assert {k: v for k, v in job.items() if k not in strip} == \
            {k: v for k, v in job_compose.items() if k not in strip}, job["job_name"]


def test_k8s_agent_differs_from_compose_only_in_resolver() -> None:
    compose_lb = stack.load_yaml("collector/ha/agent.yaml")["exporters"]["loadbalancing"]
    k8s = stack.load_yaml("k8s/overlays/production/agent-k8s.yaml")
    k8s_lb = k8s["exporters"]["loadbalancing/k8s"]
    assert {**k8s_lb, "resolver": None} == {**compose_lb, "resolver": None}
    assert k8s_lb["resolver"]["dns"]["hostname"] == "otel-gateway-headless"
    assert k8s["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing/k8s"]
