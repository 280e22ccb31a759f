"""N real demo processes pushing OTLP through the real collector into a real Prometheus.

The compose topology on loopback: ``sizewise-otel demo`` processes (same service name, each its own
``service.instance.id``) --OTLP/HTTP--> the built collector (a test copy of collector/config.yaml)
<--scrape-- Prometheus (the pinned build, a test copy of prometheus/prometheus.yml with its rules).
Intervals are short (1 s export, 1 s scrape) and the collector's ``metric_expiration`` shrinks so a
dead instance leaves the exporter in seconds instead of compose's 5 minutes.

API (everything else is private)::

    with MultiApp(2, instance_env={1: {"MATERIALS_SERVICE_URL": "http://127.0.0.1:9"}}) as apps:
        apps.job                 # "sizewise/sizewise-hvac": the Prometheus job of every instance
        apps.url(i)              # base URL of demo i (restart keeps its port and databases)
        apps.instance_ids[i]     # its service.instance.id = the ``instance`` label behind the collector
                                 # (a uuid per process, read from the demo's own target_info)
        apps.query(promql)       # instant query -> Prometheus result list; ``at=`` a unix time
        apps.value(promql)       # the single value of a query, None when empty
        apps.kill(i)             # SIGKILL demo i (its process group): no shutdown, no final export
        apps.restart(i, env={})  # start demo i again: a new process, so a new service.instance.id (the
                                 # old one lingers in the exporter until metric_expiration); ``env``
                                 # is merged over the instance's environment from now on
        apps.prometheus, apps.collector   # tests.servers.Server / tests.stack.RunningCollector

``alertmanager=`` (a ``host:port``) points the test Prometheus's alerting at a real Alertmanager.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import TracebackType
from typing import Any

import httpx

from tests import servers, stack

EXPORT_INTERVAL_MS = 1000
SCRAPE_INTERVAL = "1s"
METRIC_EXPIRATION = "10s"  # compose: 5m; a dead instance's series leave the exporter after this
SERVICE = "sizewise-hvac"
NAMESPACE = "sizewise"  # the SDK's service.namespace: job = "<namespace>/<service name>"


class MultiApp:
    def __init__(self, n: int, *, env: dict[str, str] | None = None,
                 instance_env: dict[int, dict[str, str]] | None = None,
                 metric_expiration: str = METRIC_EXPIRATION, alertmanager: str | None = None) -> None:
        self.n = n
        self.env = dict(env or {})
        self.instance_env = {i: dict(e) for i, e in (instance_env or {}).items()}
        self.metric_expiration = metric_expiration
        self.alertmanager = alertmanager
        self.instance_ids: list[str] = []
        self.job = f"{NAMESPACE}/{self.env.get('OTEL_SERVICE_NAME', SERVICE)}"
        self.collector: stack.RunningCollector | None = None
        self.prometheus: servers.Server | None = None
        self._demos: list[servers.Server] = []
        self._cleanup = contextlib.ExitStack()

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> MultiApp:
        try:
            self._start()
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._cleanup.close()

    def _start(self) -> None:
        self.collector = self._start_collector()
        self._cleanup.callback(self.collector.stop)
        hosts = {"otel-collector:8889": f"127.0.0.1:{self.collector.ports['prometheus']}",
                 "otel-collector:8888": f"127.0.0.1:{self.collector.ports['telemetry']}"}
        if self.alertmanager:
            hosts["alertmanager:9093"] = self.alertmanager
        config = stack.prometheus_test_config(hosts, interval=SCRAPE_INTERVAL)
        path = stack.write_yaml(config, servers.tempdir("multiapp-prom") / "prometheus.yml")
        self.prometheus = servers.prometheus_server(path, stack.prometheus_flags())
        self.prometheus.start(timeout=60)
        self._cleanup.callback(self.prometheus.stop)
        for i in range(self.n):
            demo = self._demo(i)
            self._demos.append(demo)
            self._cleanup.callback(demo.stop)
            demo.start(timeout=60)
            self.instance_ids.append(_instance_id(demo.url))

    def _start_collector(self) -> stack.RunningCollector:
        """stack.start_collector's copy of collector/config.yaml, with a short metric_expiration.

        Traces go nowhere (the demos sample none): a closed port as the trace backend."""
        binary = servers.need_collector()
        ports = {role: servers.free_port() for role in stack.COLLECTOR_PORTS}
        workdir = servers.tempdir("multiapp-otelcol")
        config = stack.collector_test_config(ports)
        config["exporters"]["prometheus"]["metric_expiration"] = self.metric_expiration
        path = stack.write_yaml(config, workdir / "config.yaml")
        srv = servers.Server("otel-collector", ports["otlp_grpc"], workdir, [binary, f"--config={path}"],
                             workdir / "collector.log",
                             env={"TRACES_OTLP_ENDPOINT": "127.0.0.1:9", "DEPLOYMENT_ENVIRONMENT": "test"})
        srv.ready = lambda: servers.http_ok(f"http://127.0.0.1:{ports['health']}/")
        srv.start(timeout=60)
        return stack.RunningCollector(srv, ports)

    def _demo(self, i: int, reuse: servers.Server | None = None) -> servers.Server:
        """Demo i's server; ``reuse``: the previous one's port and working dir (its databases)."""
        assert self.collector is not None
        workdir = reuse.workdir if reuse else servers.tempdir(f"multiapp-demo{i}")
        port = reuse.port if reuse else servers.free_port()
        env = {
            "DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
            "ERROR_STORE_URL": f"sqlite:///{workdir / 'errors.db'}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.collector.otlp_http,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_INTERVAL_MS),
            "OTEL_TRACES_SAMPLER": "always_off",
            "DEPLOYMENT_ENVIRONMENT": "test",
            **self.env, **self.instance_env.get(i, {}),
        }
        argv = [sys.executable, "-m", "sizewise_otel.cli", "demo", "--host", "127.0.0.1", "--port", str(port)]
        srv = servers.Server(f"demo-{i}", port, workdir, argv, workdir / "demo.log", env=env)
        srv.ready = lambda: servers.http_ok(f"{srv.url}/livez")
        return srv

    # --- the processes -----------------------------------------------------------------------
    def url(self, i: int) -> str:
        return self._demos[i].url

    def kill(self, i: int) -> None:
        """SIGKILL demo i: it exports nothing more, as when the OOM killer or a node loss strikes."""
        self._demos[i].stop(signal.SIGKILL)

    def restart(self, i: int, env: dict[str, str] | None = None) -> None:
        """Start demo i again (after kill(), or stopped first with SIGTERM), with its port and databases;
        it gets a new service.instance.id. ``env`` is merged over its environment from now on."""
        old = self._demos[i]
        old.stop()
        if env:
            self.instance_env.setdefault(i, {}).update(env)
        demo = self._demo(i, reuse=old)
        self._demos[i] = demo
        self._cleanup.callback(demo.stop)
        demo.start(timeout=60)
        self.instance_ids[i] = _instance_id(demo.url)

    # --- Prometheus ----------------------------------------------------------------------------
    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        assert self.prometheus is not None
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = httpx.get(f"{self.prometheus.url}/api/v1/query", params=params, timeout=10).json()
        if body.get("status") != "success":
            raise AssertionError(f"{promql}: {body}")
        return body["data"]["result"]

    def value(self, promql: str, at: float | None = None) -> float | None:
        result = self.query(promql, at)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{promql}: {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])


def _instance_id(url: str) -> str:
    """service.instance.id of a running demo, from ``target_info`` on its own /metrics.

    Every process gets a fresh uuid as its service.instance.id (unless OTEL_RESOURCE_ATTRIBUTES sets one),
    so the id is read back rather than chosen."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "target_info" and "service_instance_id" in sample.labels:
                return sample.labels["service_instance_id"]
    raise AssertionError(f"{url}/metrics has no target_info with service_instance_id")
