"""The figures docs/performance.md quotes, each reprinted by one command.

    python bench/figures.py lean         # LeanHistogram.record vs the SDK's Histogram.record / add
    python bench/figures.py gate         # ServerSpanGate.start vs Tracer.start_span (SERVER span)
    python bench/figures.py gc           # GC under wrk: SIZEWISE_GC_FREEZE on vs off, and bare (uvicorn)
    python bench/figures.py exposition   # /metrics body: sizewise's one pass vs prometheus_client
    python bench/figures.py sqlredis     # SQL / Redis per operation: bare, contrib + SDK, sizewise
    python bench/figures.py routing      # routing a service's GET /ping: bare, include_router, EndpointGroup
    python bench/figures.py threads      # server CPU a request per thread, bare vs instrument() (bench/where.py)
    python bench/figures.py layer        # the HTTP layer alone, a request not sampled / sampled (bench/where.py)
    python bench/figures.py otlp         # OTLP encoding of a SERVER span (bench/where.py)
    python bench/figures.py periodic     # a worker's timed work: OTLP metric export, dashboard sample (bench/where.py)
    python bench/figures.py export       # what OTLP export adds under gunicorn, by thread (bench/where.py)
    python bench/figures.py instructions # instructions and L1 misses a request, callgrind (bench/instructions.py)
    python bench/figures.py demo         # the demo route in-process, parts switched off (bench/demo_parts.py)
    python bench/figures.py demo-instructions  # the demo route in-process under callgrind (bench/instructions.py)
    python bench/figures.py all

Every figure is a median over interleaved batches (A, B, B, A, ...), so a neighbour's load lands
on every side; the machine's load average is printed with it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import demo_parts, instructions, where  # noqa: E402
from bench.parts import _interleaved, timed  # noqa: E402
from bench.report import print_figures  # noqa: E402


def _per_call_ns(cases: dict[str, Callable[[], Any]], n: int = 20_000, batches: int = 7) -> dict[str, float]:
    return {k: v * 1e3 for k, v in _interleaved({k: timed(f) for k, f in cases.items()}, batches, n).items()}


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    print_figures(title, rows)


def lean() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from sizewise_otel.fastpath import lean_counter, lean_histogram, lean_histogram_instrument

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    attrs = {"http.request.method": "GET", "url.scheme": "http", "http.route": "/ping",
             "http.response.status_code": 200, "network.protocol.version": "1.1"}
    hist = lean_histogram(provider, "http.server.request.duration", "s", "d",
                          [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], ("bench", "1", ""))
    assert hist is not None, "the lean histogram needs the SDK MeterProvider"
    point = hist.point(("GET", "/ping", 200), attrs)
    meter = provider.get_meter("bench")
    sdk_hist = meter.create_histogram("bench.duration", unit="s")
    sdk_updown = meter.create_up_down_counter("bench.active")
    got = _per_call_ns({
        "LeanHistogram.record": lambda: hist.record(point, 0.0123),
        "LeanHistogram.record_with_exemplar": lambda: hist.record_with_exemplar(point, 0.0123, 1, 2, {}),
        "SDK Histogram.record (5 attributes)": lambda: sdk_hist.record(0.0123, attrs),
        "SDK UpDownCounter.add (2 attributes)": lambda: sdk_updown.add(1, {"http.request.method": "GET",
                                                                             "url.scheme": "http"}),
    })
    _table("per measurement, in process", [(k, f"{v / 1e3:.2f} us") for k, v in got.items()])
    # A business signal as a service records it through Telemetry.instrument(): the SDK instrument
    # (the public path) against the lean one the fast path hands out (fastpath/catalog_instruments.py).
    scope = ("bench", "1", None)
    business = {"sizewise.hvac.calculation.type": "round_duct", "sizewise.hvac.calculation.outcome": "success"}
    sdk_counter = meter.create_counter("bench.calculations")
    sdk_duration = meter.create_histogram("bench.calculation.duration", unit="s")
    lean_calculations = lean_counter(provider, sdk_counter, "bench.calculations.lean", "1", "d", scope)
    lean_duration = lean_histogram_instrument(provider, sdk_duration, "bench.calculation.duration.lean", "s", "d",
                                              [0.001, 0.01, 0.1, 1], business, scope)
    assert lean_calculations is not sdk_counter and lean_duration is not sdk_duration
    got = _per_call_ns({
        "SDK Counter.add (2 attributes)": lambda: sdk_counter.add(1, business),
        "Telemetry.instrument() counter add (lean)": lambda: lean_calculations.add(1, business),
        "SDK Histogram.record (2 attributes)": lambda: sdk_duration.record(0.0123, business),
        "Telemetry.instrument() histogram record (lean)": lambda: lean_duration.record(0.0123, business),
    })
    _table("a business signal per measurement, in process", [(k, f"{v / 1e3:.2f} us") for k, v in got.items()])
    provider.shutdown()


def gate() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind

    from sizewise_otel.fastpath import ServerSpanGate

    rows = []
    for ratio in (0.0, 0.1, 1.0):
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        tracer = provider.get_tracer("bench")
        g = ServerSpanGate(provider, tracer)
        if not g.fast:
            raise SystemExit("ServerSpanGate is not on its fast path here (SIZEWISE_FASTPATH=0?)")
        got = _per_call_ns({
            "gate": lambda g=g: g.start("GET /ping", None).end(),
            "sdk": lambda t=tracer: t.start_span("GET /ping", kind=SpanKind.SERVER).end(),
        }, n=10_000)
        what = {0.0: "non-sampled root", 0.1: "root at 10 % sampling (span started and ended)",
                1.0: "sampled root (span started and ended)"}[ratio]
        rows += [(f"{what}: Tracer.start_span", f"{got['sdk'] / 1e3:.2f} us"),
                 (f"{what}: ServerSpanGate.start", f"{got['gate'] / 1e3:.2f} us")]
        provider.shutdown()
    _table("SERVER span per request, in process (no exporter)", rows)


def gc_freeze(seconds: float = 10.0, rounds: int = 3) -> None:
    import httpx

    from bench.apps import INFO_PATH, TRIVIAL_PATH
    from bench.parts import _app_env, started
    from bench.proc import measured, uvicorn_server, wrk

    wd = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    servers = {f"freeze={v}": uvicorn_server("bench.apps", "sizewise", wd / v, TRIVIAL_PATH,
                                             _app_env(wd, v, {"SIZEWISE_GC_FREEZE": v, "BENCH_GC_STATS": "1"}))
               for v in ("true", "false")}
    # bare FastAPI beside them: the collections the app itself causes at the same load
    servers["bare"] = uvicorn_server("bench.apps", "bare", wd / "bare", TRIVIAL_PATH,
                                     _app_env(wd, "bare", {"BENCH_GC_STATS": "1"}))
    out: dict[str, list[tuple[float, ...]]] = {k: [] for k in servers}
    with started(servers):
        for s in servers.values():
            wrk(s.url + TRIVIAL_PATH, 3)
        for r in range(rounds):
            for name in list(servers)[::-1] if r % 2 else list(servers):
                s = servers[name]
                before = httpx.get(s.url + INFO_PATH, timeout=10).json()
                got = measured(s, s.url + TRIVIAL_PATH, seconds)
                after = httpx.get(s.url + INFO_PATH, timeout=10).json()
                col = [a - b for a, b in zip(after["gc"]["collections"], before["gc"]["collections"], strict=True)]
                out[name].append((col[2], col[0] + col[1], after["gc"]["ms"] - before["gc"]["ms"], got.p99_ms,
                                  got.cpu_us, after["gc_frozen"]))
    rows = []
    for name, runs in out.items():
        med = [statistics.median(x[i] for x in runs) for i in range(6)]
        rows.append((f"{name}: full / young collections in {seconds:g} s", f"{med[0]:.0f} / {med[1]:.0f}"))
        rows.append((f"{name}: GC time in {seconds:g} s; objects frozen", f"{med[2]:.0f} ms; {med[5]:,.0f}"))
        rows.append((f"{name}: wrk p99; server CPU per request", f"{med[3]:.1f} ms; {med[4]:.0f} us"))
    _table(f"instrument(app) under wrk -t1 -c16, {rounds} interleaved rounds, medians", rows)


def exposition() -> None:
    from prometheus_client import REGISTRY
    from prometheus_client import generate_latest as stock

    from bench.parts import _telemetry
    from sizewise_otel.fastpath.exposition import generate_latest as ours

    telemetry = _telemetry(Path(tempfile.mkdtemp(prefix="bench-expo-")))
    rows, counters, have = [], [], 0
    for target in (1_000, 10_000):
        for i in range(have, target):
            if i % 1000 == 0:
                counters.append(telemetry.meter.create_counter(f"bench.series{i // 1000}", unit="1"))
            counters[-1].add(1, {"series": str(i % 1000), "kind": "bench"})
        have = target
        got = _interleaved({"stock": timed(lambda: stock(REGISTRY)), "ours": timed(lambda: ours(REGISTRY))},
                           batches=5, size=1)
        rows += [(f"{target:,} series: prometheus_client.generate_latest", f"{got['stock'] / 1e3:.1f} ms"),
                 (f"{target:,} series: sizewise_otel.fastpath.exposition.generate_latest",
                  f"{got['ours'] / 1e3:.1f} ms")]
    # The rows above scrape series that did not move since the previous scrape (the bench's shape);
    # here every one of the 10,000 moved, so no line is reused (the adds are not timed).
    changed: dict[str, list[float]] = {"stock": [], "ours": []}
    for b in range(5):
        for name, fn in (sorted(changed.items()) if b % 2 else sorted(changed.items(), reverse=True)):
            for i in range(have):
                counters[i // 1000].add(1, {"series": str(i % 1000), "kind": "bench"})
            render = stock if name == "stock" else ours
            t0 = time.perf_counter()
            render(REGISTRY)
            fn.append((time.perf_counter() - t0) * 1e3)
    rows += [(f"{have:,} series, all changed: prometheus_client.generate_latest",
              f"{statistics.median(changed['stock']):.1f} ms"),
             (f"{have:,} series, all changed: sizewise_otel.fastpath.exposition.generate_latest",
              f"{statistics.median(changed['ours']):.1f} ms")]
    _table("/metrics body from the process registry", rows)


def sqlredis() -> None:
    import redis
    import sqlalchemy as sa
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    from bench.parts import _telemetry, pg_redis
    from sizewise_otel.instrumentation import instrument_redis
    from sizewise_otel.instruments.cache import InstrumentedCache
    from sizewise_otel.instruments.sql import instrument_engine
    from tests import servers as test_servers

    tel = _telemetry(Path(tempfile.mkdtemp(prefix="bench-ops-")))
    tp, mp = tel.tracer_provider, tel.meter_provider
    meter = mp.get_meter("bench.before")
    hist, count = meter.create_histogram("bench.cache.duration", unit="s"), meter.create_counter("bench.cache.ops")

    def sdk_cache_get(client: Any) -> Callable[[], Any]:  # "before": the cache's metrics through the SDK
        def op() -> Any:
            t0 = time.perf_counter()
            value = client.get("bench:key")
            attrs = {"sizewise.cache.backend": "redis", "sizewise.cache.operation": "get"}
            hist.record(time.perf_counter() - t0, attrs)
            count.add(1, {**attrs, "sizewise.cache.result": "hit"})
            return value
        return op

    with pg_redis() as (pg, rd):
        url = test_servers.postgres_url(pg)
        engines = {k: sa.create_engine(url) for k in ("bare", "before", "after")}
        SQLAlchemyInstrumentor().instrument(engine=engines["before"], tracer_provider=tp, meter_provider=mp)
        instrument_engine(engines["after"], tel)
        q = sa.text("SELECT 1")
        conns = {k: e.connect() for k, e in engines.items()}
        sql = _interleaved({k: timed(lambda c=c: c.execute(q).scalar()) for k, c in conns.items()},
                           batches=15, size=300)
        clients = {k: redis.Redis(host="127.0.0.1", port=rd.port) for k in ("bare", "before", "after")}
        RedisInstrumentor.instrument_client(clients["before"], tracer_provider=tp)
        instrument_redis(clients["after"], tel)
        clients["bare"].set("bench:key", b"x" * 64)
        cache = InstrumentedCache(tel, clients["after"])
        red = _interleaved({"bare": timed(lambda: clients["bare"].get("bench:key")),
                            "before": timed(sdk_cache_get(clients["before"])),
                            "after": timed(lambda: cache.get("bench:key"))}, batches=15, size=600)
        for c in conns.values():
            c.close()
    rows = []
    for name, got in (("SQLAlchemy SELECT 1 (PostgreSQL)", sql), ("Redis GET through the cache", red)):
        rows.append((f"{name}: bare", f"{got['bare']:.0f} us"))
        for k, what in (("before", "contrib instrumentor + SDK instruments"), ("after", "sizewise")):
            rows.append((f"{name}: {what}", f"{got[k] - got['bare']:+.1f} us ({got[k] / got['bare'] - 1:+.0%})"))
    _table("per operation, wall, 10 % parent-based sampling, no current span", rows)


def routing() -> None:
    """What SizeWise's endpoints cost the service's own requests at routing: its ``GET /ping`` (defined
    after instrument()) matched through the app's route list as the router does, until Match.FULL."""
    from fastapi import FastAPI
    from starlette.routing import Match

    from sizewise_otel.instrumentation import _component_routers, instrument
    from sizewise_otel.settings import load_settings
    from sizewise_otel.web.metrics import metrics_router
    from sizewise_otel.web.routes import EndpointGroup

    settings = load_settings(error_store_url=f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-routes-')) / 'e.db'}")

    def with_ping(app: FastAPI) -> FastAPI:
        app.get("/ping")(lambda: {"ok": True})
        return app

    bare = with_ping(FastAPI())
    shipped = FastAPI()
    instrument(shipped, settings=settings)
    with_ping(shipped)
    before = FastAPI()
    handle = instrument(before, settings=settings)
    # The routers added the old way: the group taken out, each router included, in instrument()'s order.
    before.router.routes[:] = [r for r in before.router.routes if not isinstance(r, EndpointGroup)]
    for router in [metrics_router(), *_component_routers(handle)]:
        before.include_router(router)
    with_ping(before)

    scope = {"type": "http", "method": "GET", "path": "/ping", "raw_path": b"/ping", "root_path": "",
             "query_string": b"", "headers": [], "scheme": "http", "server": ("testserver", 80)}

    def route(app: FastAPI) -> Callable[[], Any]:
        routes = app.router.routes

        def one() -> Any:
            for r in routes:
                if r.matches(scope)[0] is Match.FULL:
                    return r
            raise LookupError("GET /ping matched no route")
        assert getattr(one(), "path", None) == "/ping"
        return one

    apps = {"bare FastAPI": bare,
            "instrument(app), include_router (before)": before,
            "instrument(app), one EndpointGroup (shipped)": shipped}
    got = _per_call_ns({k: route(a) for k, a in apps.items()})
    _table("routing GET /ping (a service route after instrument()), in process, per request",
           [(f"{k}, {len(a.router.routes)} routes", f"{got[k] / 1e3:.2f} us") for k, a in apps.items()])


FIGURES: dict[str, Callable[[], None]] = {"lean": lean, "gate": gate, "gc": gc_freeze, "exposition": exposition,
                                          "sqlredis": sqlredis, "routing": routing, "threads": where.threads,
                                          "layer": where.layer, "otlp": where.otlp, "periodic": where.periodic,
                                          "export": where.export_cost,
                                          "instructions": instructions.instructions, "demo": demo_parts.figure,
                                          "demo-instructions": instructions.demo_instructions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=[*FIGURES, "all"])
    args = parser.parse_args()
    for name, fn in FIGURES.items():
        if args.figure in (name, "all"):
            fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
