"""Where a request's added cost goes: the figures behind docs/performance.md's "What is left".

    python bench/figures.py threads   # server CPU a request per thread: bare vs instrument(), uvicorn and gunicorn
    python bench/figures.py layer     # the HTTP layer alone in a hot loop: a request not sampled, and one sampled
    python bench/figures.py otlp      # OTLP encoding of a SERVER span: the library's encoder, the fast path's
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.apps import TRIVIAL_PATH
from bench.parts import _app_env, otlp_collector, started
from bench.proc import Server, gunicorn_server, harness_beside_loadgen, stat_ticks, uvicorn_server, wrk
from bench.report import print_figures


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    print_figures(title, rows, width=66)


def _thread_ticks(server: Server) -> dict[tuple[int, int], int]:
    """CPU clock ticks of every thread of every process of the server, by (pid, tid)."""
    out: dict[tuple[int, int], int] = {}
    for pid in server.pids():
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out[(pid, int(task.name))] = stat_ticks(task / "stat")
            except OSError:
                continue  # a thread that ended meanwhile
    return out


def _run(server: Server, seconds: float) -> tuple[float, list[float], float]:
    """One wrk run: (server CPU us a request, per-thread us a request largest first, req/s)."""
    before = _thread_ticks(server)
    run = wrk(server.url + TRIVIAL_PATH, seconds)
    after = _thread_ticks(server)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    per_thread = sorted(((after[k] - before.get(k, 0)) * tick_us / run.requests for k in after), reverse=True)
    return sum(per_thread), per_thread, run.rps


Runs = dict[str, list[tuple[float, list[float], float]]]


def _alternate(servers: dict[str, Server], rounds: int, seconds: float) -> Runs:
    out: Runs = {v: [] for v in servers}
    for s in servers.values():
        _run(s, 3)  # warm-up
    for r in range(rounds):
        for v in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
            out[v].append(_run(servers[v], seconds))
    return out


def threads(rounds: int = 6, seconds: float = 4.0) -> None:
    """Bare and instrument() alternating, uvicorn then 2 gunicorn workers pushing OTLP to the collector."""
    harness_beside_loadgen()
    wd = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    rows: list[tuple[str, str]] = []
    uvicorn = {v: uvicorn_server("bench.apps", v, wd / f"u-{v}", TRIVIAL_PATH, _app_env(wd, f"u-{v}"))
               for v in ("bare", "sizewise")}
    with started(uvicorn):
        rows += _thread_rows("uvicorn", _alternate(uvicorn, rounds, seconds))
    with otlp_collector() as (otlp, _sink):
        gunicorn = {v: gunicorn_server("bench.apps", v, wd, TRIVIAL_PATH,
                                       _app_env(wd, f"g-{v}", otlp if v == "sizewise" else None))
                    for v in ("bare", "sizewise")}
        with started(gunicorn):
            rows += _thread_rows("gunicorn -w 2 + collector", _alternate(gunicorn, rounds, seconds))
    _table(f"server CPU a request, {rounds} alternating rounds of {seconds:g} s, medians", rows)


EXPORT_VARIANTS = {  # name -> (bench.apps variant, OTLP environment or None: a discarding span exporter)
    "bare": ("bare", None),
    "OTLP traces + metrics (the bench row)": ("sizewise", {}),
    "OTLP traces only": ("sizewise", {"OTEL_METRICS_EXPORTER": "none"}),
    "no OTLP (discarding span exporter)": ("sizewise", None),
}


def export_cost(rounds: int = 5, seconds: float = 4.0) -> None:
    """The trivial route under 2 gunicorn workers: what pushing OTLP to the collector adds, by thread."""
    harness_beside_loadgen()
    wd = Path(tempfile.mkdtemp(prefix="bench-export-"))
    with otlp_collector() as (otlp, _sink):
        servers = {name: gunicorn_server("bench.apps", variant, wd / f"v{i}", TRIVIAL_PATH,
                                         _app_env(wd, f"e-{i}", None if extra is None else {**otlp, **extra}))
                   for i, (name, (variant, extra)) in enumerate(EXPORT_VARIANTS.items())}
        with started(servers):
            got = _alternate(servers, rounds, seconds)
    bare_rps = statistics.median(rps for _, _, rps in got["bare"])
    rows = []
    for name, runs in got.items():
        rps = statistics.median(r for _, _, r in runs)
        main = statistics.median(per[0] for _, per, _ in runs)
        rest = statistics.median(sum(per[1:]) for _, per, _ in runs)
        rows.append((f"{name}: req/s ratio; loop thread; others",
                     f"{rps / bare_rps:.3f}; {main:.1f}; {rest:.1f} us"))
    _table(f"trivial route, gunicorn -w 2, CPU a request, {rounds} alternating rounds of {seconds:g} s, medians", rows)


def _thread_rows(where: str, runs: Runs) -> list[tuple[str, str]]:
    rows = []
    for v, got in runs.items():
        total = statistics.median(t for t, _, _ in got)
        top = [statistics.median(p[i] if len(p) > i else 0.0 for _, p, _ in got) for i in range(2)]
        rows.append((f"{where}, {v}: whole server; busiest thread; next thread",
                     f"{total:.0f}; {top[0]:.0f}; {top[1]:.1f} us"))
    bare, me = (statistics.median(t for t, _, _ in runs[v]) for v in ("bare", "sizewise"))
    rows.append((f"{where}: added a request; CPU ratio bare / instrument()", f"+{me - bare:.0f} us; {bare / me:.2f}"))
    return rows


class LayerLoop:
    """HTTPServerTelemetry around an app that only answers, with its request, called in a loop (no server, no
    socket); ``ratio`` is the default sampler's, sampled spans go through a BatchSpanProcessor to a discarding
    exporter. ``run(n, wrapped)`` times n calls of the layer (or of the app alone)."""

    def __init__(self, ratio: float) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        from bench.apps import discarding_span_exporter
        from sizewise_otel.instruments.http_server import HTTPServerTelemetry
        from sizewise_otel.instruments.http_stats import RequestStats
        from sizewise_otel.telemetry import get_telemetry

        telemetry = get_telemetry()  # the process's meters (no span exporter: spans go to self.provider)
        route = type("Route", (), {"path": TRIVIAL_PATH})()
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
        body = {"type": "http.response.body", "body": b'{"status":"ok"}'}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["route"] = route
            await send(start)
            await send(body)

        self.app = app
        self.provider = TracerProvider(resource=telemetry.resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
        self.provider.add_span_processor(BatchSpanProcessor(discarding_span_exporter()))
        self.wrapped = HTTPServerTelemetry(app, tracer_provider=self.provider, meter_provider=telemetry.meter_provider,
                                           stats=RequestStats())
        self.scope = {"type": "http", "http_version": "1.1", "server": ("127.0.0.1", 8000),
                      "client": ("127.0.0.1", 5555), "scheme": "http", "method": "GET", "root_path": "",
                      "path": TRIVIAL_PATH, "query_string": b"",
                      "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")]}

    async def run(self, n: int, layered: bool = True) -> float:
        """Seconds a call, over ``n`` calls of the layer (``layered``) or of the app alone."""
        call, scope = self.wrapped if layered else self.app, self.scope

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            return None

        t0 = time.perf_counter()
        for _ in range(n):
            await call(dict(scope), receive, send)
        return (time.perf_counter() - t0) / n


def layer(n: int = 50_000, rounds: int = 9) -> None:
    """HTTPServerTelemetry around an app that only answers, called in a loop (no server, no socket)."""
    rows = []
    for label, ratio in (("not sampled", 0.0), ("sampled", 1.0), ("10 % sampled (the default)", 0.1)):
        loop = LayerLoop(ratio)

        async def measure(loop: LayerLoop = loop) -> tuple[list[float], list[float]]:
            await loop.run(n)  # warm-up
            added, bare = [], []
            for _ in range(rounds):
                alone, layered = await loop.run(n, layered=False), await loop.run(n)
                added.append((layered - alone) * 1e6)
                bare.append(alone * 1e6)
            return added, bare

        added, bare = asyncio.run(measure())
        rows.append((f"HTTP layer, a request {label}", f"{statistics.median(added):.1f} us"))
        loop.provider.shutdown()
    # the same loop without the layer: how fast this machine runs right now (it swings about 2x)
    rows.append(("the app alone, a call (this machine's speed right now)", f"{statistics.median(bare):.2f} us"))
    _table(f"HTTPServerTelemetry added to an app that only answers, {rounds} x {n:,} calls, medians", rows)


def otlp(spans: int = 512, rounds: int = 7) -> None:
    """Encoding typical SERVER spans for OTLP, per span: the exporters' own ``encode_spans`` and the fast
    path's encoder (``sizewise_otel.fastpath.otlp_spans``, what sizewise's exporter uses), interleaved."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sizewise_otel.fastpath import otlp_spans

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for i in range(spans):
        attributes = {"http.request.method": "GET", "url.scheme": "http", "network.protocol.version": "1.1",
                      "url.path": TRIVIAL_PATH, "server.address": "127.0.0.1", "server.port": 8000,
                      "client.address": "127.0.0.1", "client.port": 5555 + i % 16, "user_agent.original": "wrk",
                      "http.route": TRIVIAL_PATH, "http.response.status_code": 200}
        tracer.start_span(f"GET {TRIVIAL_PATH}", attributes=attributes).end()
    finished = exporter.get_finished_spans()
    if not otlp_spans.exact() or otlp_spans.encode_spans(finished) != encode_spans(finished):
        raise SystemExit("the fast path's OTLP encoder is not exact on this install: not measured")
    times: dict[str, list[float]] = {"library": [], "fast path": []}
    for _ in range(rounds):
        for name, encode in (("library", encode_spans), ("fast path", otlp_spans.encode_spans)):
            t0 = time.perf_counter()
            encode(finished).SerializePartialToString()
            times[name].append((time.perf_counter() - t0) / spans * 1e6)
    _table(f"OTLP protobuf encoding, {spans} SERVER spans of 11 attributes, {rounds} interleaved rounds, median", [
        ("encode_spans + SerializePartialToString (the exporters' own), a span",
         f"{statistics.median(times['library']):.1f} us"),
        ("the fast path's encoder (sizewise's exporter), the same bytes, a span",
         f"{statistics.median(times['fast path']):.1f} us")])


def periodic_child(endpoint: str, rounds: int) -> None:
    """Run in a fresh process: instrument() exporting to ``endpoint``, then time its periodic work."""
    os.environ.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_METRIC_EXPORT_INTERVAL="3600000",
                      SIZEWISE_API_KEYS="viewer:bench", LOG_LEVEL="WARNING")
    from fastapi.testclient import TestClient
    from opentelemetry import metrics

    from bench.apps import build
    from sizewise_otel.PerformanceDashboard import get_performance_dashboard

    with TestClient(build("sizewise")) as client:
        for _ in range(300):
            client.get(TRIVIAL_PATH)  # the HTTP series exist, as under traffic
        provider: Any = metrics.get_meter_provider()
        reader = next(r for r in provider._metric_readers if type(r).__name__ == "PeriodicExportingMetricReader")
        dashboard = get_performance_dashboard()

        def cpu_ms(work: Any) -> float:
            times = []
            for _ in range(rounds):
                t0 = time.process_time()
                work()
                times.append((time.process_time() - t0) * 1e3)
            return statistics.median(times)

        rows = [("an OTLP metric export (every 10 s by default), CPU", f"{cpu_ms(reader.force_flush):.1f} ms"),
                ("a dashboard sample (every 5 s), CPU", f"{cpu_ms(dashboard._sample_sync):.1f} ms")]
    _table(f"instrument()'s periodic work, per process, {rounds} rounds, medians", rows)


def periodic(rounds: int = 7) -> None:
    """What a worker does on a timer, not per request: the metric export and the dashboard's sample."""
    import subprocess
    import sys

    from tests import webhook

    with webhook.receiver() as (endpoint, _):
        code = f"from bench.where import periodic_child; periodic_child({endpoint!r}, {rounds})"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
