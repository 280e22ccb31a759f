"""The HA monitoring stack's pieces on loopback (issue 21): test copies of the HA configs, derived
from the checked-in files at test time exactly as tests/stack.py derives the single-node ones.

A copy changes only what a machine without Docker needs: compose host names become 127.0.0.1 ports,
intervals shrink, rule ``for`` durations are divided by 20, secrets come from temp files. The
receivers, routes, relabelling, external labels and dedup settings are the checked-in ones.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests import servers, stack

ROOT = stack.ROOT
PROMETHEUS_HA = "prometheus/prometheus-ha.yml"
ALERTMANAGER = "alertmanager/alertmanager.yml"
HA_SERVICES = {"otel-agent", "otel-gateway-1", "otel-gateway-2", "prometheus-a", "prometheus-b",
               "alertmanager-1", "alertmanager-2", "alertmanager-3", "victoriametrics", "grafana-ha"}

# The repo files compose's `ha` profile mounts, each run by an HA integration test (the Grafana
# files: the dashboards are the ones test_stack_e2e.py runs; the datasource's URL is the
# VictoriaMetrics query API test_ha_remote_write.py asks every panel of).
HA_EXECUTED = {
    "collector/config.yaml": "test_ha_tail_sampling.py (agent base)",
    "collector/ha/agent.yaml": "test_ha_tail_sampling.py",
    "collector/ha/gateway.yaml": "test_ha_tail_sampling.py",
    "prometheus/prometheus-ha.yml": "test_ha_alerting.py, test_ha_remote_write.py",
    "prometheus/rules": "test_ha_alerting.py, test_ha_remote_write.py",
    "alertmanager/alertmanager.yml": "test_ha_alerting.py",
    "alertmanager/templates": "test_ha_alerting.py",
    "grafana/provisioning/dashboards": "test_stack_e2e.py",
    "grafana/provisioning/datasources/ha": "test_ha_remote_write.py",
    "grafana/dashboards": "test_ha_remote_write.py",
}
# Gossip peers wait position x peer-timeout before sending, to see a peer's notification first;
# shorter than the 15 s default so the test waits less, far above loopback gossip latency (200 ms).
PEER_TIMEOUT_S = 5


def seconds(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def fast_rule_files(tmp: Path) -> list[str]:
    """Copies of prometheus/rules/*.yml with every ``for`` divided by 20 (at least 1 s)."""
    paths = []
    for src in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, seconds(rule['for']) // 20)}s"
        paths.append(str(stack.write_yaml(doc, tmp / src.name)))
    return paths


def prometheus_ha_config(tmp: Path, name: str, hosts: dict[str, str], *, remote_write: str | None,
                         interval: str = "1s") -> Path:
    """prometheus/prometheus-ha.yml with compose hosts mapped; unmapped targets are refused."""
    cfg = copy.deepcopy(stack.load_yaml(PROMETHEUS_HA))
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    rules = tmp / "rules"
    rules.mkdir(exist_ok=True)
    cfg["rule_files"] = fast_rule_files(rules)

    def target(t: str) -> str:
        return hosts.get(t, "127.0.0.1:9")  # discard port: connection refused, as a stopped service

    for am in cfg["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            sc["targets"] = [target(t) for t in sc["targets"]]
    for job in cfg["scrape_configs"]:
        job["scrape_interval"] = interval
        for sc in job.get("static_configs", []):
            sc["targets"] = [target(t) for t in sc["targets"]]
    if remote_write is None:
        del cfg["remote_write"]
    else:
        for rw in cfg["remote_write"]:
            rw["url"] = remote_write
    return stack.write_yaml(cfg, tmp / f"{name}.yml")


def alertmanager_test_config(tmp: Path, sink_url: str) -> Path:
    """alertmanager/alertmanager.yml with every receiver URL at the sink (/slack, /relay, /watchdog)."""
    cfg = stack.load_yaml(ALERTMANAGER)
    secrets = {"slack": sink_url + "/slack", "watchdog": sink_url + "/watchdog", "relay_key": "ha-key"}
    for name, value in secrets.items():
        (tmp / name).write_text(value + "\n")
    cfg["templates"] = [str(ROOT / "alertmanager" / t) for t in cfg["templates"]]
    cfg["route"].update(group_wait="1s", group_interval="1s")
    for receiver in cfg["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(tmp / "slack")
        for hook in receiver.get("webhook_configs", []):
            if "url_file" in hook:
                hook["url_file"] = str(tmp / "watchdog")
                continue
            hook["url"] = sink_url + "/relay"
            hook["http_config"]["authorization"]["credentials_file"] = str(tmp / "relay_key")
    return stack.write_yaml(cfg, tmp / "alertmanager.yml")


# --- a local HTTP receiver standing in for Slack, the relay and the dead man's switch -----------

class _Handler(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Sink:
    url: str
    received: list[tuple[str, bytes]]

    def slack_titles(self) -> list[str]:
        return [json.loads(body)["attachments"][0]["title"] for path, body in list(self.received)
                if path == "/slack"]

    def count(self, path: str) -> int:
        return sum(1 for p, _ in list(self.received) if p == path)


@contextlib.contextmanager
def sink() -> Iterator[Sink]:
    handler = type("Handler", (_Handler,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Sink(f"http://127.0.0.1:{server.server_address[1]}", handler.received)
    finally:
        server.shutdown()
        server.server_close()


# --- a scrape target whose samples the test sets --------------------------------------------

@dataclass
class FakeExporter:
    """Serves /metrics in the text format with the samples in ``lines`` (name{labels} value)."""

    lines: dict[str, float] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = "".join(f"{k} {v}\n" for k, v in dict(exporter.lines).items()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the Alertmanager cluster ------------------------------------------------------------------

def alertmanager_cluster(config: Path, n: int = 3) -> list[servers.Server]:
    """``n`` Alertmanagers gossiping on loopback, each told of every other peer (not started)."""
    cluster_ports = [servers.free_port() for _ in range(n)]
    peers = []
    for i, port in enumerate(cluster_ports):
        others = [f"--cluster.peer=127.0.0.1:{p}" for p in cluster_ports if p != port]
        srv = servers.alertmanager_server(config, [*others, f"--cluster.peer-timeout={PEER_TIMEOUT_S}s",
                                                   "--cluster.gossip-interval=200ms",
                                                   "--cluster.pushpull-interval=5s"])
        # alertmanager_server disables clustering with an empty listen address, a flag that cannot
        # be repeated: put the peer's address in its place.
        srv.argv[srv.argv.index("--cluster.listen-address=")] = f"--cluster.listen-address=127.0.0.1:{port}"
        srv.name = f"alertmanager-{i + 1}"
        peers.append(srv)
    return peers


def cluster_size(am: servers.Server) -> int:
    status = httpx.get(f"{am.url}/api/v2/status", timeout=2).json()
    return len(status["cluster"].get("peers") or [])


def alert_states(am: servers.Server, alertname: str) -> list[str]:
    alerts = httpx.get(f"{am.url}/api/v2/alerts", timeout=2).json()
    return [a["status"]["state"] for a in alerts if a["labels"].get("alertname") == alertname]


# --- collector tiers ---------------------------------------------------------------------------

GATEWAY_PORTS = {"otlp_grpc": 4317, "health": 13133, "telemetry": 8888}


def _listen_on_loopback(config: Any, ports: dict[str, int], container: dict[str, int]) -> Any:
    """Every ``0.0.0.0:<container port>`` of ``config`` moved to ``127.0.0.1:<ports[role]>``."""
    by_port = {str(container[role]): port for role, port in ports.items()}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node.startswith("0.0.0.0:"):
            return f"127.0.0.1:{by_port[node.split(':')[1]]}"
        return node

    config = walk(config)
    for reader in config["service"]["telemetry"]["metrics"]["readers"]:
        reader["pull"]["exporter"]["prometheus"].update(host="127.0.0.1", port=ports["telemetry"])
    return config


@dataclass
class Collector:
    server: servers.Server
    ports: dict[str, int]

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    def telemetry(self, metric: str) -> float:
        """Sum of a counter of the collector's own telemetry (e.g. otelcol_receiver_accepted_spans)."""
        text = httpx.get(f"http://127.0.0.1:{self.ports['telemetry']}/metrics", timeout=2).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(tuple(metric + s for s in ("{", " ", "_total{", "_total "))))


# Both tiers run the HA distribution (collector/builder-config-ha.yaml), built at the newest release
# the module proxy serves its components at (see that file).
HA_BINARY = ROOT / "build" / "otelcol-sizewise-ha" / "otelcol-sizewise-ha"


def need_ha_collector() -> str:
    return servers.need(str(HA_BINARY) if HA_BINARY.exists() else None,
                        "HA collector (scripts/build-collector-ha.sh)")


def _start_collector(name: str, configs: list[Path], ports: dict[str, int], workdir: Path,
                     env: dict[str, str], binary: str) -> Collector:
    srv = servers.Server(name, ports["otlp_grpc"], workdir, [binary, *(f"--config={c}" for c in configs)],
                         workdir / "collector.log", env=env)
    srv.ready = lambda: servers.http_ok(f"http://127.0.0.1:{ports['health']}/")
    srv.start(timeout=60)
    return Collector(srv, ports)


def start_gateway(name: str, traces_endpoint: str) -> Collector:
    """The built collector running a loopback copy of collector/ha/gateway.yaml."""
    ports = {role: servers.free_port() for role in GATEWAY_PORTS}
    workdir = servers.tempdir(name)
    config = _listen_on_loopback(stack.load_yaml("collector/ha/gateway.yaml"), ports, GATEWAY_PORTS)
    path = stack.write_yaml(config, workdir / "gateway.yaml")
    return _start_collector(name, [path], ports, workdir, {"TRACES_OTLP_ENDPOINT": traces_endpoint},
                            need_ha_collector())


def start_agent(name: str, gateways: list[Collector]) -> Collector:
    """The built collector running collector/config.yaml with collector/ha/agent.yaml merged over it,
    the gateway hostnames of agent.yaml mapped to the running gateways in order."""
    ports = {role: servers.free_port() for role in stack.COLLECTOR_PORTS}
    workdir = servers.tempdir(name)
    base = stack.write_yaml(stack.collector_test_config(ports), workdir / "config.yaml")
    agent = stack.load_yaml("collector/ha/agent.yaml")
    static = agent["exporters"]["loadbalancing"]["resolver"]["static"]
    assert len(static["hostnames"]) == len(gateways), static
    static["hostnames"] = [g.otlp_grpc for g in gateways]
    overlay = stack.write_yaml(agent, workdir / "agent.yaml")
    return _start_collector(name, [base, overlay], ports, workdir,
                            {"DEPLOYMENT_ENVIRONMENT": "test", "TRACES_OTLP_ENDPOINT": "127.0.0.1:9"},
                            need_ha_collector())


# --- VictoriaMetrics ---------------------------------------------------------------------------

def victoriametrics_server(interval: str = "1s") -> servers.Server:
    """VictoriaMetrics single node with compose's flags (retention, dedup), on a loopback port.

    Changed for the test only: the dedup interval becomes the test's scrape interval, and data is
    visible to queries 1 s after it arrives rather than 30 s (-search.latencyOffset), uncached.
    """
    from tests.tools import built_tool

    binary = servers.need(built_tool("victoria-metrics"), "VictoriaMetrics (scripts/build-servers.sh victoriametrics)")
    command = stack.compose()["services"]["victoriametrics"]["command"]
    flags = [f for f in command if not f.startswith(("-storageDataPath=", "-httpListenAddr="))]
    assert any(f.startswith("-retentionPeriod=") for f in flags), command
    flags = [f"-dedup.minScrapeInterval={interval}" if f.startswith("-dedup.minScrapeInterval=") else f
             for f in flags]
    workdir = servers.tempdir("vm")
    port = servers.free_port()
    srv = servers.Server("victoriametrics", port, workdir,
                         [binary, f"-storageDataPath={workdir / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
                          *flags, "-search.latencyOffset=1s", "-search.disableCache"], workdir / "vm.log")
    srv.ready = lambda: servers.http_ok(f"{srv.url}/health")
    return srv


def query(url: str, promql: str, **params: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql, **params}, timeout=10).json()
    assert body["status"] == "success", (promql, body)
    return body["data"]["result"]
