"""Sizing figures of the HA monitoring stack (docs/scaling.md), measured on this machine.

    python bench/ha_sizing.py gateway   # spans/s per core of a tail-sampling gateway, data points/s
                                        # per core of an agent (real built collectors, OTLP gRPC)
    python bench/ha_sizing.py series    # series per app instance (the demo under gunicorn, the
                                        # built collector, Prometheus; after mixed load)
    python bench/ha_sizing.py memory    # resident memory per million active series, Prometheus
                                        # and VictoriaMetrics (remote-written by Prometheus)

Per core means per CPU-second the process under test used (psutil), so a neighbour's load on the
shared machine lowers the rate of work, not the figure. Each command prints one line per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import ha, servers, stack  # noqa: E402


def cpu_seconds(srv: servers.Server) -> float:
    assert srv.proc is not None
    t = psutil.Process(srv.proc.pid).cpu_times()
    return t.user + t.system


def rss(srv: servers.Server) -> int:
    assert srv.proc is not None
    return psutil.Process(srv.proc.pid).memory_info().rss


# --- gateway ------------------------------------------------------------------------------------

def _trace_requests(n: int, traces: int, rng: random.Random) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    now = time.time_ns()
    out = []
    for _ in range(n):
        spans = []
        for _ in range(traces):
            tid, root = rng.randbytes(16), rng.randbytes(8)
            error = rng.random() < 0.05
            spans.append(trace_pb2.Span(trace_id=tid, span_id=root, name="GET /api/hvac/calculate",
                                        start_time_unix_nano=now, end_time_unix_nano=now + 40_000_000))
            for i in range(4):  # 5 spans a trace: handler, db, cache, outbound call
                code = trace_pb2.Status.STATUS_CODE_ERROR if error and i == 3 else 0
                spans.append(trace_pb2.Span(trace_id=tid, span_id=rng.randbytes(8), parent_span_id=root,
                                            name=f"child-{i}", start_time_unix_nano=now,
                                            end_time_unix_nano=now + 5_000_000,
                                            status=trace_pb2.Status(code=code)))
        out.append(trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
            scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]))
    return out


def _metric_requests(n: int, series: int) -> list[Any]:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    out = []
    for k in range(n):
        now = time.time_ns()
        points = [metrics_pb2.NumberDataPoint(
            attributes=[common_pb2.KeyValue(key="route", value=common_pb2.AnyValue(string_value=f"/r{i}"))],
            start_time_unix_nano=now - 10**9, time_unix_nano=now, as_double=float(k + i)) for i in range(series)]
        metric = metrics_pb2.Metric(name="bench_requests", unit="1", sum=metrics_pb2.Sum(
            data_points=points, is_monotonic=True,
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE))
        resource = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
            key="service.name", value=common_pb2.AnyValue(string_value="bench"))])
        out.append(metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
            resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])])]))
    return out


def _blast(endpoint: str, requests: list[Any], kind: str, seconds: float, threads: int = 2) -> None:
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        with grpc.insecure_channel(endpoint) as channel:
            stub: Any = (trace_service_pb2_grpc.TraceServiceStub(channel) if kind == "traces"
                         else metrics_service_pb2_grpc.MetricsServiceStub(channel))
            i = offset
            while time.monotonic() < stop:
                with contextlib.suppress(grpc.RpcError):  # memory_limiter refusals: retry the next
                    stub.Export(requests[i % len(requests)], timeout=10)
                i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def gateway(seconds: float) -> None:
    sink = stack.TraceSink()
    started: list[ha.Collector] = []
    try:
        gateways = [ha.start_gateway(f"bench-gateway-{i}", sink.endpoint) for i in (1, 2)]
        started += gateways
        agent = ha.start_agent("bench-agent", gateways)
        started.append(agent)
        rng = random.Random(1)
        traces = _trace_requests(400, 100, rng)  # 200,000 spans, every trace id distinct
        c0 = [cpu_seconds(g.server) for g in gateways]
        a0 = sum(g.telemetry("otelcol_receiver_accepted_spans") for g in gateways)
        _blast(agent.otlp_grpc, traces, "traces", seconds)
        time.sleep(12)  # decision_wait: the sampler's work on the last traces is counted too
        spans = sum(g.telemetry("otelcol_receiver_accepted_spans") for g in gateways) - a0
        cpu = sum(cpu_seconds(g.server) for g in gateways) - sum(c0)
        print(f"gateway (tail_sampling): {spans:,.0f} spans in {cpu:.1f} CPU-s = "
              f"{spans / cpu:,.0f} spans/s per core")
        metrics = _metric_requests(50, 1000)
        c0a = cpu_seconds(agent.server)
        p0 = agent.telemetry("otelcol_receiver_accepted_metric_points")
        _blast(agent.otlp_grpc, metrics, "metrics", seconds)
        points = agent.telemetry("otelcol_receiver_accepted_metric_points") - p0
        cpu_a = cpu_seconds(agent.server) - c0a
        print(f"agent (metrics -> prometheus exporter): {points:,.0f} data points in {cpu_a:.1f} CPU-s = "
              f"{points / cpu_a:,.0f} data points/s per core")
    finally:
        for c in started:
            c.server.stop()
            shutil.rmtree(c.server.workdir, ignore_errors=True)
        sink.stop()


# --- series per app instance ---------------------------------------------------------------------

def series() -> None:
    import asyncio

    import httpx

    from sizewise_otel.demo.load import run_load
    from tests.integration.test_stack_e2e import JOB, running_stack

    with servers.postgres_server() as pg, servers.redis_server() as redis_srv, \
            running_stack(pg, redis_srv, "bench_series") as s:
        asyncio.run(run_load(s.app.url, rate=40, duration=20, concurrency=8, seed=3))
        time.sleep(5)
        rows = httpx.get(f"{s.prometheus.url}/api/v1/query", timeout=10, params={
            "query": f'count by (instance) ({{job="{JOB}"}})'}).json()["data"]["result"]
        counts = sorted(int(r["value"][1]) for r in rows)
        print(f"series per app instance (gunicorn worker, after mixed load): {counts} "
              f"(max {max(counts)})")


# --- memory per million series -------------------------------------------------------------------

def _exporter(n: int) -> tuple[ThreadingHTTPServer, int]:
    body = "".join(f'bench_series{{i="{i}",shard="{i % 16}"}} {i % 100}\n' for i in range(n)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def memory(n: int, settle: float) -> None:
    import httpx

    server, port = _exporter(n)
    vm = ha.victoriametrics_server("5s")
    tmp = servers.tempdir("bench-mem")
    config = tmp / "prometheus.yml"
    prom = servers.prometheus_server(config)
    config.write_text(
        "global: {scrape_interval: 5s, scrape_timeout: 5s}\n"
        f"scrape_configs: [{{job_name: bench, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n"
        f"remote_write: [{{url: '{vm.url}/api/v1/write'}}]\n")
    try:
        vm.start(timeout=60)
        prom.start(timeout=60)
        time.sleep(3)
        # Baselines right after start-up: the first scrape of the target is still under way then.
        base_prom, base_vm = rss(prom), rss(vm)

        def head_series() -> int:
            return int(httpx.get(f"{prom.url}/api/v1/status/tsdb", timeout=10).json()["data"]["headStats"][
                "numSeries"])

        servers.wait_for(lambda: head_series() >= n, 180, f"{n} head series")
        servers.wait_for(lambda: int(httpx.get(f"{vm.url}/api/v1/series/count", timeout=10).json()["data"][0])
                         >= n, 180, f"{n} series in VictoriaMetrics")
        time.sleep(settle)  # several scrapes and remote-write batches after all series exist
        per_m = 1_000_000 / n
        p, v = rss(prom) - base_prom, rss(vm) - base_vm
        print(f"Prometheus: {n:,} series -> +{p / 2**20:,.0f} MiB RSS = {p * per_m / 2**30:.2f} GiB per million series")
        print(f"VictoriaMetrics: {n:,} series -> +{v / 2**20:,.0f} MiB RSS = {v * per_m / 2**30:.2f} GiB "
              "per million series")
    finally:
        for srv in (prom, vm):
            srv.stop()
            shutil.rmtree(srv.workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["gateway", "series", "memory"])
    parser.add_argument("--seconds", type=float, default=20.0, help="gateway: load duration per signal")
    parser.add_argument("--series", type=int, default=200_000, help="memory: active series")
    parser.add_argument("--settle", type=float, default=30.0, help="memory: seconds after all series exist")
    args = parser.parse_args()
    if args.what == "gateway":
        gateway(args.seconds)
    elif args.what == "series":
        series()
    else:
        memory(args.series, args.settle)


if __name__ == "__main__":
    main()
