"""The full stack's config files, listed once, and their test copies derived from them.

compose.yaml mounts these files into the containers; the integration tests run the same files with
the real binaries (the built collector, Debian's Prometheus). ``tests/unit/test_compose.py`` asserts
that compose mounts exactly these paths, so a test can never pass on a config users do not run.
A test copy changes only what a machine without Docker needs: listen addresses move to free
loopback ports, compose host names become 127.0.0.1, intervals shrink. Nothing is hand-written.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"


@dataclass(frozen=True)
class Mounted:
    """A repo file compose mounts into a service, and where."""

    service: str
    path: str  # relative to the repo root
    target: str


COLLECTOR_CONFIG = Mounted("otel-collector", "collector/config.yaml", "/etc/otelcol-contrib/config.yaml")
PROMETHEUS_CONFIG = Mounted("prometheus", "prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml")
PROMETHEUS_RULES = Mounted("prometheus", "prometheus/rules", "/etc/prometheus/rules")
# compose.otlp-direct.yaml: the collector-less path, apps pushing OTLP into Prometheus 3 itself.
PROMETHEUS_OTLP_CONFIG = Mounted("prometheus", "prometheus/prometheus-otlp.yml", "/etc/prometheus/prometheus.yml")
COMPOSE_OTLP_DIRECT = ROOT / "compose.otlp-direct.yaml"

# The configs the integration tests execute (test_stack_*.py); compose must mount each of them.
EXECUTED = (COLLECTOR_CONFIG, PROMETHEUS_CONFIG, PROMETHEUS_RULES)

# Container ports of the collector config, by role.
COLLECTOR_PORTS = {"otlp_grpc": 4317, "otlp_http": 4318, "prometheus": 8889, "health": 13133,
                   "telemetry": 8888}


def load_yaml(path: str | Path) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def _walk(node: Any, fn: Any) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return fn(node)


def collector_test_config(ports: dict[str, int]) -> dict[str, Any]:
    """collector/config.yaml with every listen address moved to 127.0.0.1:<ports[role]>."""
    config = load_yaml(COLLECTOR_CONFIG.path)
    by_port = {str(COLLECTOR_PORTS[role]): port for role, port in ports.items()}

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"0\.0\.0\.0:(\d+)", value)
            if match:
                return f"127.0.0.1:{by_port[match.group(1)]}"
        return value

    config = _walk(config, rewrite)
    for reader in config["service"]["telemetry"]["metrics"]["readers"]:
        prom = reader["pull"]["exporter"]["prometheus"]
        assert prom["port"] == COLLECTOR_PORTS["telemetry"], prom
        prom.update(host="127.0.0.1", port=ports["telemetry"])
    return config


def prometheus_test_config(hosts: dict[str, str], *, interval: str = "1s",
                           path: str = PROMETHEUS_CONFIG.path) -> dict[str, Any]:
    """prometheus/prometheus.yml (or ``path``) with compose targets mapped (``{"otel-collector:8889": "127.0.0.1:N"}``).

    Targets not in ``hosts`` go to a closed loopback port (they show as down, as in a stack where
    that service is stopped). Rule files are taken from the repo's prometheus/ directory.
    """
    config = copy.deepcopy(load_yaml(path))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    base = ROOT / Path(path).parent
    config["rule_files"] = [str(base / pattern) for pattern in config.get("rule_files", [])]

    def target(t: str) -> str:
        return hosts.get(t, "127.0.0.1:9")  # discard port: connection refused

    for am in config["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            sc["targets"] = [target(t) for t in sc["targets"]]
    for job in config["scrape_configs"]:
        job["scrape_interval"] = interval
        for sc in job.get("static_configs", []):
            sc["targets"] = [target(t) for t in sc["targets"]]
    return config


def prometheus_flags() -> list[str]:
    """compose's Prometheus flags that change behaviour (retention, features), for the test server."""
    command = compose()["services"]["prometheus"]["command"]
    keep = ("--storage.tsdb.retention", "--enable-feature")
    return [flag for flag in command if flag.startswith(keep)]


def write_yaml(data: Any, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- running the stack's pieces on loopback ---------------------------------------------------

@dataclass
class RunningCollector:
    server: Any  # tests.servers.Server
    ports: dict[str, int]

    def stop(self, remove: bool = True) -> None:
        import shutil

        self.server.stop()
        if remove:
            shutil.rmtree(self.server.workdir, ignore_errors=True)

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    @property
    def otlp_grpc(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}/metrics"

    @property
    def telemetry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['telemetry']}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['health']}/"


def start_collector(traces_endpoint: str) -> RunningCollector:
    """The built collector running a test copy of collector/config.yaml on free loopback ports."""
    from tests import servers

    binary = servers.need_collector()
    ports = {role: servers.free_port() for role in COLLECTOR_PORTS}
    workdir = servers.tempdir("otelcol")
    config = write_yaml(collector_test_config(ports), workdir / "config.yaml")
    srv = servers.Server(
        "otel-collector", ports["otlp_grpc"], workdir, [binary, f"--config={config}"],
        workdir / "collector.log",
        env={"TRACES_OTLP_ENDPOINT": traces_endpoint, "DEPLOYMENT_ENVIRONMENT": "test"},
    )
    srv.ready = lambda: servers.http_ok(f"http://127.0.0.1:{ports['health']}/")
    srv.start()
    return RunningCollector(srv, ports)


class TraceSink:
    """A minimal OTLP/gRPC trace backend standing in for Jaeger: it keeps what it receives."""

    def __init__(self) -> None:
        import threading
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        sink = self
        self.requests: list[Any] = []
        self._lock = threading.Lock()

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                with sink._lock:
                    sink.requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server.start()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for rs in request.resource_spans:
                attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((attrs, span) for span in ss.spans)
        return out

    def stop(self) -> None:
        self._server.stop(grace=1)
