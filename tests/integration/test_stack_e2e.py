"""The full stack end to end, without Docker: the configs compose mounts, run by the real binaries.

demo (gunicorn, 2 uvicorn workers, as the Dockerfile runs it) --OTLP--> built collector (copy of
collector/config.yaml) --> Prometheus (copy of prometheus/prometheus.yml, 1 s scrape, the
generated rules loaded) ; traces --> an OTLP sink standing in for Jaeger ; PostgreSQL + Redis.

Exactly 1,000 requests must be counted exactly once across the workers; a worker forked after
start-up (gunicorn replacing a killed one) must export; every Grafana panel query must return data.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from tests import servers, stack

pytestmark = pytest.mark.integration

JOB = "sizewise/sizewise-hvac"
ROUTE = "/api/hvac/calculate"
REQUESTS = 1000


def dockerfile_cmd() -> list[str]:
    """The CMD of the repo's Dockerfile (exec form): the test serves the demo exactly so."""
    text = (stack.ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("CMD "))
    return json.loads(line[4:])


def gunicorn_argv(port: int) -> list[str]:
    argv = dockerfile_cmd()
    assert argv[0] == "gunicorn", argv
    bind = argv.index("-b")
    argv[bind + 1] = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "gunicorn", *argv[1:]]


def materials_argv(port: int) -> list[str]:
    """compose's materials command, bound to a loopback port."""
    argv = list(stack.compose()["services"]["materials"]["command"])
    argv[argv.index("-b") + 1] = f"127.0.0.1:{port}"
    return [sys.executable, "-m", *argv]


def start_materials(cleanup: contextlib.ExitStack) -> servers.Server:
    """compose's materials service on a loopback port, stopped and removed by ``cleanup``."""
    mport = servers.free_port()
    mdir = servers.tempdir("materials")
    cleanup.callback(shutil.rmtree, mdir, ignore_errors=True)
    materials = servers.Server("materials", mport, mdir, materials_argv(mport), mdir / "materials.log")
    materials.ready = lambda: servers.http_ok(f"http://127.0.0.1:{mport}/livez")
    materials.start(timeout=60)
    cleanup.callback(materials.stop)
    return materials


def app_env(collector: stack.RunningCollector, database_url: str, redis_url: str,
            prometheus_url: str, materials_url: str) -> dict[str, str]:
    """compose's app environment, with the addresses of this machine's servers."""
    env = {k: str(v) for k, v in stack.compose()["services"]["app"]["environment"].items()}
    env.pop("DATABASE_PASSWORD_FILE")  # the container entrypoint's job; the test URL has no password
    # ${VAR:-default}: the default, never the developer's shell (the test is the same everywhere)
    env = {k: re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m[2], v) for k, v in env.items()}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        MATERIALS_SERVICE_URL=materials_url,
        PROMETHEUS_URL=prometheus_url,
        SIZEWISE_API_KEYS_FILE=str(stack.ROOT / "secrets" / "api_keys.example"),
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http,
        OTEL_METRIC_EXPORT_INTERVAL="1000",
    )
    return env


@dataclass
class Stack:
    collector: stack.RunningCollector
    prometheus: servers.Server
    app: servers.Server
    sink: stack.TraceSink
    state: dict[str, Any] = field(default_factory=dict)

    def query(self, promql: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5)
        body = resp.json()
        assert body["status"] == "success", (promql, body)
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def instances(self) -> set[str]:
        return {r["metric"]["instance"] for r in self.query(f'target_info{{job="{JOB}"}}')}

    def workers(self) -> list[psutil.Process]:
        assert self.app.proc is not None
        return psutil.Process(self.app.proc.pid).children()


@contextlib.contextmanager
def running_stack(postgres: servers.Server, redis_srv: servers.Server, database: str,
                  **app_overrides: str) -> Iterator[Stack]:
    """Collector, Prometheus, materials and the demo under gunicorn, on loopback ports."""
    # An empty database: both workers create the schema at start-up, serialised by the demo
    # store's advisory lock, as in compose.
    database_url = servers.create_database(postgres, database)
    if redis_srv.proc is None or redis_srv.proc.poll() is not None:
        redis_srv.start()
    redis_url = f"redis://127.0.0.1:{redis_srv.port}/0"
    with contextlib.ExitStack() as cleanup:
        sink = stack.TraceSink()
        cleanup.callback(sink.stop)
        collector = stack.start_collector(sink.endpoint)
        cleanup.callback(collector.stop)

        workdir = servers.tempdir("prom-config")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        hosts = {
            "otel-collector:8889": f"127.0.0.1:{collector.ports['prometheus']}",
            "otel-collector:8888": f"127.0.0.1:{collector.ports['telemetry']}",
        }
        config = stack.write_yaml(stack.prometheus_test_config(hosts), workdir / "prometheus.yml")
        prometheus = servers.prometheus_server(config, stack.prometheus_flags())
        cleanup.callback(shutil.rmtree, prometheus.workdir, ignore_errors=True)
        prometheus.start()
        cleanup.callback(prometheus.stop)

        materials = start_materials(cleanup)

        port = servers.free_port()
        app_workdir = servers.tempdir("app")
        cleanup.callback(shutil.rmtree, app_workdir, ignore_errors=True)
        app = servers.Server("gunicorn", port, app_workdir, gunicorn_argv(port), app_workdir / "app.log",
                             env={**app_env(collector, database_url, redis_url, prometheus.url, materials.url),
                                  **app_overrides})
        app.ready = lambda: servers.http_ok(f"http://127.0.0.1:{port}/livez")
        app.start(timeout=60)
        cleanup.callback(app.stop)
        yield Stack(collector, prometheus, app, sink)


@pytest.fixture(scope="module")
def full_stack(postgres: servers.Server, redis_srv: servers.Server) -> Iterator[Stack]:
    # Every request traced, so every export carries exemplars (compose samples 10 %).
    with running_stack(postgres, redis_srv, "stack_e2e", OTEL_TRACES_SAMPLER_ARG="1.0") as s:
        yield s


def test_every_worker_exports_including_one_forked_after_start_up(full_stack: Stack) -> None:
    s = full_stack
    servers.wait_for(lambda: len(s.workers()) == 2, 30, "2 gunicorn workers")
    servers.wait_for(lambda: len(s.instances()) == 2, 30, "target_info of both workers in Prometheus")
    before = s.instances()
    assert len({p.pid for p in s.workers()}) == 2

    # gunicorn replaces a worker that dies: the new process, forked long after start-up, must export
    # with its own service.instance.id (none of the old worker's series are overwritten).
    victim = s.workers()[0]
    old_pids = {p.pid for p in s.workers()}
    victim.send_signal(signal.SIGKILL)
    servers.wait_for(lambda: len({p.pid for p in s.workers()} - old_pids) == 1 and len(s.workers()) == 2,
                     30, "gunicorn replacing the killed worker")
    servers.wait_for(lambda: len(s.instances()) == 3, 30, "target_info of the replacement worker")
    replacement = s.instances() - before
    assert len(replacement) == 1
    s.state["replacement"] = replacement.pop()


def _send(base: str, n: int) -> list[int]:
    from sizewise_otel.demo import hvac

    statuses = []
    rng = random.Random(n)
    # A new connection for each request (Connection: close), so the kernel spreads them over both
    # workers' accept() calls instead of pinning a keep-alive connection to one worker.
    with httpx.Client(base_url=base, timeout=10, headers={"Connection": "close"}) as client:
        for _ in range(n):
            statuses.append(client.post(ROUTE, json=hvac.sample_request(rng)).status_code)
    return statuses


def test_exactly_1000_requests_counted_once_across_workers(full_stack: Stack) -> None:
    s = full_stack
    base = s.app.url
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [st for chunk in pool.map(lambda n: _send(base, n), [REQUESTS // 8] * 8) for st in chunk]
    assert len(statuses) == REQUESTS
    assert all(st in (200, 201) for st in statuses), sorted(set(statuses))

    promql = f'sum(http_server_request_duration_seconds_count{{http_route="{ROUTE}"}})'
    try:
        servers.wait_for(lambda: s.scalar(promql) == REQUESTS, 30, f"{promql} == {REQUESTS}")
    except TimeoutError:
        pytest.fail(f"Prometheus reports {s.scalar(promql)} for {promql}, expected {REQUESTS}")
    time.sleep(3)  # three more scrapes and exports: nothing arrives late or twice
    assert s.scalar(promql) == REQUESTS

    by_instance = s.query(
        f'sum by (instance) (http_server_request_duration_seconds_count{{http_route="{ROUTE}"}})')
    served = {r["metric"]["instance"]: float(r["value"][1]) for r in by_instance}
    print(f"{promql} = {s.scalar(promql):g}; by worker: {sorted(served.values())}")
    assert len(served) == 2, served  # both live workers served and exported their share
    assert sum(served.values()) == REQUESTS
    if "replacement" in s.state:
        assert s.state["replacement"] in served
    # The direct-scrape view is per worker: neither worker's own registry holds the total.
    assert all(v < REQUESTS for v in served.values())


def test_traces_reach_the_trace_backend_and_exemplars_link_to_them(full_stack: Stack) -> None:
    s = full_stack
    servers.wait_for(lambda: any(span.name.startswith("POST") for _, span in s.sink.spans()), 30,
                     "server spans at the trace backend")
    instances = {attrs.get("service.instance.id") for attrs, _ in s.sink.spans()
                 if attrs.get("service.name") == "sizewise-hvac"}
    assert len(instances) >= 2

    # Prometheus stores exemplars (exemplar storage on, OpenMetrics scrape of the collector), and
    # their trace ids are traces the backend received: Grafana's exemplar link finds the trace.
    servers.wait_for(lambda: bool(_exemplars(s, '{__name__=~".+_bucket"}')), 20, "exemplars in Prometheus")
    trace_ids = {e["labels"]["trace_id"] for series in _exemplars(s, '{__name__=~".+_bucket"}')
                 for e in series["exemplars"]}
    received = {span.trace_id.hex() for _, span in s.sink.spans()}
    assert trace_ids & received, "no exemplar trace id is a trace the backend received"


def _exemplars(s: Stack, query: str) -> list:
    now = time.time()
    resp = httpx.get(f"{s.prometheus.url}/api/v1/query_exemplars", timeout=5,
                     params={"query": query, "start": now - 600, "end": now})
    return resp.json()["data"]


# --- the Grafana dashboards, through this topology ------------------------------------------

DASHBOARDS = stack.ROOT / "grafana" / "dashboards"


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _variables(s: Stack, dashboard: dict) -> dict[str, str]:
    """A value for every template variable: regex-all for multi/all variables, else a real value."""
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300",
              "__interval_ms": "15000"}
    for var in dashboard.get("templating", {}).get("list", []):
        name, kind = var["name"], var.get("type")
        current = (var.get("current") or {}).get("value")
        if isinstance(current, list):
            current = current[0] if current else None
        if var.get("includeAll") or var.get("multi"):
            values[name] = ".*"
        elif kind == "query":
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((?:(.*),\s*)?(\w+)\)\s*", query or "")
            found: list[str] = []
            if match:
                params = {"match[]": match[1]} if match[1] else {}
                found = httpx.get(f"{s.prometheus.url}/api/v1/label/{match[2]}/values",
                                  params=params, timeout=5).json()["data"]
            values[name] = found[0] if found else ".*"
        elif current not in (None, "", "$__all"):
            values[name] = str(current)
        else:
            values[name] = ".*"
    return values


def _expand(expr: str, values: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", sub, expr)


PANEL_DEADLINE = 60.0  # exports, scrapes and rule evaluations are 1 s each; a loaded machine is slower


def test_every_grafana_panel_query_returns_data(full_stack: Stack) -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS.relative_to(stack.ROOT)} (written by the dashboards issue)"
    s = full_stack
    # Realistic traffic, errors, cache hits and misses included, so every panel has something to show.
    import asyncio

    from sizewise_otel.demo.load import run_load

    stats = asyncio.run(run_load(s.app.url, rate=40, duration=8, concurrency=8, seed=7))
    assert stats.sent > 100

    # Exports (1 s), scrapes (1 s) and rule evaluations (1 s) catch up at the machine's pace: each
    # query is asked until it returns data, and those that never did by the deadline are reported.
    boards = {path.name: _dashboard(path) for path in files}
    pending = {(name, title, expr) for name, board in boards.items() for title, expr in _targets(board)}
    assert pending, "the dashboards hold no PromQL targets"
    checked = len(pending)
    last: dict[tuple[str, str, str], str] = {}
    deadline = time.monotonic() + PANEL_DEADLINE
    while pending:
        for name in sorted({name for name, _, _ in pending}):
            values = _variables(s, boards[name])  # label values too may appear only with the data
            for key in sorted(k for k in pending if k[0] == name):
                last[key] = _expand(key[2], values)
                if s.query(last[key]):
                    pending.discard(key)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    empty = [f"{name} / {title!r}: {last[(name, title, expr)]}" for name, title, expr in sorted(pending)]
    assert not empty, (f"{len(empty)} of {checked} panel queries returned no data within "
                       f"{PANEL_DEADLINE:g} s:\n" + "\n".join(empty))


def _dashboard(path: Any) -> dict[str, Any]:
    dashboard = json.loads(path.read_text())
    return dashboard.get("dashboard", dashboard)


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every visible target."""
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr and not target.get("hide"):
                yield str(panel.get("title")), expr


def test_prometheus_scrapes_the_collector_and_its_own_telemetry(full_stack: Stack) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in full_stack.query("up")}
    assert up["otel-collector"] == "1"
    assert up["otel-collector-internal"] == "1"
    accepted = 'sum({__name__=~"otelcol_receiver_accepted_metric_points.*", job="otel-collector-internal"})'
    servers.wait_for(lambda: (full_stack.scalar(accepted) or 0) > 0, 20, "collector's own receiver metrics")
    refused = full_stack.query('{__name__=~"otelcol_receiver_refused_metric_points.*"} > 0')
    assert not refused, refused


def test_request_latency_histogram_carries_exemplars(full_stack: Stack) -> None:
    """Issue 7: a slow bucket of the request-latency panels links to its trace in Jaeger."""
    query = "http_server_request_duration_seconds_bucket"
    try:
        servers.wait_for(lambda: bool(_exemplars(full_stack, query)), 30, f"exemplars on {query}")
    except TimeoutError:
        pytest.fail(f"no exemplars on {query}: the HTTP server layer records the request duration "
                    "without exemplars (sizewise_otel/httpserver.py LeanHistogram), so Grafana's "
                    "latency panels cannot link to traces")
