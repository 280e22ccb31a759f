"""The run's parts, one function each: ``part(profile, results, workdir, targets, **labels)``.

A part that cannot measure a row records it as a failed check (``Results.fail``) or raises, which
``run.py`` turns into one; nothing is silently left out of the table.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.apps import API_KEY, BOOM_PATH, INFO_PATH, TRIVIAL_PATH
from bench.proc import Server, gunicorn_server, on_server_cpu, pin_beside_loadgen, uvicorn_server, wrk_count
from bench.report import Check, Results
from bench.rounds import interleave

DEMO_READY = "/api/hvac/calculations/0"  # a 404 from the store: the app, its pool and PostgreSQL answer

CALCULATE_LUA = r"""
-- A new round-duct calculation every request: a cache miss, a cache set and one INSERT.
math.randomseed(os.time() * 1000 + tonumber(os.getenv("BENCH_SEED") or "0"))
request = function()
  local body = string.format('{"calculation_type": "round_duct", "airflow_cfm": %.6f}',
                             300 + math.random() * 1500)
  return wrk.format("POST", "/api/hvac/calculate", {["Content-Type"] = "application/json"}, body)
end
"""

# Methods llhttp (uvicorn's httptools parser) accepts; the unusual ones are reported as _OTHER.
RANDOM_REQUESTS_LUA = r"""
local counter = 0
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "100000")
math.randomseed(tonumber(os.getenv("BENCH_SEED") or "7"))
local methods = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "COPY",
                 "MOVE", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH"}
request = function()
  counter = counter + 1
  local path = "/r/" .. math.random(1, 1000000000) .. "/" .. math.random(1, 1000000000)
  local host = "h" .. math.random(1, 1000000000) .. ".example"
  return wrk.format(methods[math.random(1, #methods)], path, {["Host"] = host})
end
response = function(status, headers, body)
  if counter >= limit then wrk.thread:stop() end
end
"""


def _app_env(wd: Path, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"SIZEWISE_API_KEYS": f"viewer:{API_KEY}", "DATABASE_URL": f"sqlite:///{wd / (name + '.db')}",
            "ERROR_STORE_URL": f"sqlite:///{wd / (name + '-errors.db')}", "LOG_LEVEL": "WARNING", **(extra or {})}


@contextlib.contextmanager
def started(servers: dict[str, Server]) -> Iterator[dict[str, Server]]:
    try:
        for s in servers.values():
            s.start()
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def _info(server: Server) -> dict[str, Any]:
    return httpx.get(server.url + INFO_PATH, timeout=10).json()


def _variant_env(wd: Path, v: str) -> dict[str, str]:
    return _app_env(wd, v, {"SIZEWISE_FASTPATH": "0"} if v == "public" else None)


def _state_problem(v: str, info: dict[str, Any]) -> str:
    """A variant that does not run what its label says is not a valid row."""
    fast = str(info.get("fastpath", ""))
    if v == "public" and not fast.startswith("off"):
        return f"public path not available (SIZEWISE_FASTPATH=0 not honoured: fast path {fast or 'unknown'})"
    if v == "sizewise" and fast != "on":
        return f"fast path not on ({fast})"
    if v == "native" and not info.get("native"):
        return "FastAPI native telemetry did not switch on"
    return ""


def http(profile: Any, res: Results, wd: Path, targets: dict[str, float], *, variants: list[str],
         labels: dict[str, str], **_: Any) -> None:
    servers = {v: uvicorn_server("bench.apps", v, wd, TRIVIAL_PATH, _variant_env(wd, v)) for v in variants}
    with started(servers):
        problems = {v: _state_problem(v, _info(s)) for v, s in servers.items()}
        group = interleave(servers, labels, TRIVIAL_PATH, rounds=profile.rounds, seconds=profile.seconds,
                           warmup=profile.warmup)
    for v, why in problems.items():
        if why:
            group[v].problem = why
    res.groups["trivial route, uvicorn"] = group


@contextlib.contextmanager
def pg_redis() -> Iterator[tuple[Any, Any]]:
    from tests import servers as test_servers

    with test_servers.postgres_server() as pg, test_servers.redis_server() as rd:
        for dependency in (pg, rd):
            pin_beside_loadgen(dependency.proc.pid)
        yield pg, rd


def _demo_env(wd: Path, v: str, pg: Any, rd: Any, db_index: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    from tests import servers as test_servers

    url = test_servers.create_database(pg, f"bench_{v}_{db_index}")
    return _app_env(wd, f"demo-{v}-{db_index}", {"DATABASE_URL": url,
                                                   "REDIS_URL": f"redis://127.0.0.1:{rd.port}/{db_index}",
                                                   **(extra or {})})


def _lua(wd: Path, name: str, text: str) -> Path:
    path = wd / name
    path.write_text(text)
    return path


def demo(profile: Any, res: Results, wd: Path, targets: dict[str, float], *, demo_labels: dict[str, str],
         **_: Any) -> None:
    script = _lua(wd, "calculate.lua", CALCULATE_LUA)
    with pg_redis() as (pg, rd):
        servers = {v: uvicorn_server("bench.demo_apps", v, wd, DEMO_READY, _demo_env(wd, v, pg, rd, i))
                   for i, v in enumerate(("bare", "sizewise"))}
        with started(servers):
            res.groups["demo POST /api/hvac/calculate, uvicorn"] = interleave(
                servers, demo_labels, "", rounds=profile.rounds, seconds=profile.seconds,
                warmup=profile.warmup, script=script)


@contextlib.contextmanager
def otlp_collector() -> Iterator[tuple[dict[str, str], Any]]:
    """The built collector (test copy of its config) beside the load generator, forwarding traces to
    an in-process sink: yields the instrumented side's OTLP environment and the sink."""
    from tests import stack

    sink = stack.TraceSink()
    collector = stack.start_collector(sink.endpoint)
    pin_beside_loadgen(collector.server.proc.pid)
    try:
        yield {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http}, sink
    finally:
        collector.stop()
        sink.stop()


def gunicorn(profile: Any, res: Results, wd: Path, targets: dict[str, float], *, labels: dict[str, str],
             demo_labels: dict[str, str], **_: Any) -> None:
    script = _lua(wd, "calculate.lua", CALCULATE_LUA)
    with otlp_collector() as (otlp, sink), pg_redis() as (pg, rd):
        trivial = {v: gunicorn_server("bench.apps", v, wd, TRIVIAL_PATH,
                                      _app_env(wd, f"g-{v}", otlp if v == "sizewise" else None))
                   for v in ("bare", "sizewise")}
        with started(trivial):
            group = interleave(trivial, labels, TRIVIAL_PATH, rounds=profile.rounds,
                               seconds=profile.seconds, warmup=profile.warmup)
        _require_spans(group, sink, 0)
        res.groups["trivial route, gunicorn -w 2 + collector"] = group
        seen = len(sink.spans())
        demos = {v: gunicorn_server("bench.demo_apps", v, wd, DEMO_READY,
                                    _demo_env(wd, v, pg, rd, 2 + i, otlp if v == "sizewise" else None))
                 for i, v in enumerate(("bare", "sizewise"))}
        with started(demos):
            group = interleave(demos, demo_labels, "", rounds=profile.rounds, seconds=profile.seconds,
                               warmup=profile.warmup, script=script)
        _require_spans(group, sink, seen)
        res.groups["demo POST /api/hvac/calculate, gunicorn -w 2 + collector"] = group


def _require_spans(group: dict[str, Any], sink: Any, before: int) -> None:
    """The instrumented side must really have pushed to the collector (which forwards traces)."""
    deadline = time.monotonic() + 30
    while len(sink.spans()) <= before and time.monotonic() < deadline:
        time.sleep(0.5)
    if len(sink.spans()) <= before and not group["sizewise"].problem:
        group["sizewise"].problem = "no span reached the collector's trace backend"


def errors(profile: Any, res: Results, wd: Path, targets: dict[str, float], **_: Any) -> None:
    server = uvicorn_server("bench.apps", "sizewise", wd / "errors", TRIVIAL_PATH, _app_env(wd, "errors"))
    # uvicorn closes the connection after an escaped exception: one connection per request.
    with started({"sizewise": server}), httpx.Client(base_url=server.url, timeout=10,
                                                     headers={"Connection": "close"}) as client:
        for _ in range(50):  # warm up: groups, attribute sets, the writer thread
            client.get(BOOM_PATH)
        skip = len(_info(server)["capture_us"])
        codes = [client.get(BOOM_PATH).status_code for _ in range(profile.boom_requests)]
        info = _info(server)
        samples = sorted(info["capture_us"][skip:])
        cpu = sorted(info["capture_cpu_us"][skip:])
    if len(samples) < profile.boom_requests or any(c != 500 for c in codes):
        res.fail("capture_error on the request path",
                 f"{len(samples)} captures timed for {profile.boom_requests} raising requests "
                 f"({sum(c == 500 for c in codes)} answered 500)")
        return
    p50, p99 = statistics.median(samples), samples[int(len(samples) * 0.99) - 1]
    res.checks.append(Check(f"capture_error on the request path, p50 ({len(samples):,} requests raising "
                            "through uvicorn, timed in the server)", f"{p50:.1f} us",
                            f"<= {targets['capture_p50_us']:.0f} us", p50 <= targets["capture_p50_us"]))
    res.checks.append(Check("capture_error on the request path, p99", f"{p99:.1f} us",
                            f"<= {targets['capture_p99_us']:.0f} us", p99 <= targets["capture_p99_us"]))
    res.checks.append(Check("capture_error, the request thread's CPU time, p50 / p99 (diagnostic: wall minus "
                            "this is time spent waiting, e.g. for the GIL)",
                            f"{statistics.median(cpu):.1f} / {cpu[int(len(cpu) * 0.99) - 1]:.1f} us", "-", None))


def rss(profile: Any, res: Results, wd: Path, targets: dict[str, float], **_: Any) -> None:
    server = uvicorn_server("bench.apps", "sizewise", wd / "rss", TRIVIAL_PATH, _app_env(wd, "rss"))
    script = _lua(wd, "random.lua", RANDOM_REQUESTS_LUA)
    with started({"sizewise": server}):
        wrk_count(server, script, 2000, seed=1)  # warm-up: the "no route" series, caches
        time.sleep(0.5)
        before = server.rss_mb()
        out = wrk_count(server, script, profile.random_requests, seed=2)
        time.sleep(0.5)
        after = server.rss_mb()
    if out.requests < profile.random_requests * 0.95 or out.errors:
        res.fail("RSS growth", f"only {out.requests} requests answered, {out.errors} socket errors")
        return
    growth = after - before
    res.checks.append(Check(f"RSS growth after {out.requests:,} requests, random paths, Host headers and "
                            f"methods ({before:.0f} -> {after:.0f} MB)", f"{growth:+.1f} MB",
                            f"<= {targets['rss_growth_mb']:.0f} MB", growth <= targets["rss_growth_mb"]))


def _telemetry(wd: Path) -> Any:
    import os

    from sizewise_otel.settings import load_settings
    from sizewise_otel.telemetry import get_telemetry

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{wd / 'bench.db'}")
    os.environ.setdefault("ERROR_STORE_URL", f"sqlite:///{wd / 'errors.db'}")
    return get_telemetry(load_settings())


def metrics(profile: Any, res: Results, wd: Path, targets: dict[str, float], **_: Any) -> None:
    from prometheus_client import REGISTRY

    from sizewise_otel.fastpath.exposition import generate_latest  # what GET /metrics serves

    telemetry = _telemetry(wd)
    # The SDK caps one metric at 2,000 attribute sets, so the series are spread over counters of
    # 1,000 each: many metrics with bounded labels, the realistic shape.
    counters: list[Any] = []
    have = 0
    for target in (1_000, 10_000):
        for i in range(have, target):
            if i % 1000 == 0:
                counters.append(telemetry.meter.create_counter(f"bench.series{i // 1000}", unit="1",
                                                               description="bench series"))
            counters[-1].add(1, {"series": str(i % 1000), "kind": "bench"})
        have = target
        generate_latest(REGISTRY)
        times, lines = [], 0
        for _ in range(3 if profile.quick else 7):
            t0 = time.perf_counter()
            body = generate_latest(REGISTRY)
            times.append((time.perf_counter() - t0) * 1e3)
            lines = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
        ms = statistics.median(times)
        limit = targets["metrics_10k_ms"] if target == 10_000 else None
        res.checks.append(Check(f"/metrics body, {target:,} extra series ({lines:,} samples), median",
                                f"{ms:.1f} ms", f"<= {limit:.0f} ms" if limit else "-",
                                None if limit is None else ms <= limit))


def _interleaved(cases: dict[str, Callable[[int], float]], batches: int, size: int) -> dict[str, float]:
    """Per-operation microseconds: batches of each case, interleaved, median of batch means."""
    per: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn(size // 4)  # warm up
    for b in range(batches):
        keys = list(cases)[::-1] if b % 2 else list(cases)
        for k in keys:
            per[k].append(cases[k](size))
    return {k: statistics.median(v) for k, v in per.items()}


def _paired(bare: Callable[[int], float], inst: Callable[[int], float], batches: int,
            size: int) -> tuple[float, float, float]:
    """(bare us, instrumented us, overhead): medians over batch pairs run back to back (alternating
    which goes first); the overhead is the median of each pair's own ratio, so a slow spell of the
    machine lands on both sides of a pair instead of on one side of the comparison."""
    bare(size // 4), inst(size // 4)  # warm up
    b_us, i_us, ratios = [], [], []
    for k in range(batches):
        if k % 2:
            i, b = inst(size), bare(size)
        else:
            b, i = bare(size), inst(size)
        b_us.append(b)
        i_us.append(i)
        ratios.append(i / b)
    return statistics.median(b_us), statistics.median(i_us), statistics.median(ratios) - 1.0


def timed(op: Callable[[], Any]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        return (time.perf_counter() - t0) / max(n, 1) * 1e6
    return run


def ops(profile: Any, res: Results, wd: Path, targets: dict[str, float], **_: Any) -> None:
    import redis
    import sqlalchemy as sa

    from sizewise_otel.instrumentation import instrument_redis
    from sizewise_otel.instruments.cache import InstrumentedCache
    from sizewise_otel.instruments.sql import instrument_engine

    telemetry = _telemetry(wd)
    from tests import servers as test_servers

    # The client (this thread) on the server's CPU, PostgreSQL and Redis on the other, as every
    # other row runs them: an operation's round trip then crosses cores, as it does between hosts.
    with pg_redis() as (pg, rd), on_server_cpu():
        url = test_servers.postgres_url(pg)
        bare_engine, inst_engine = sa.create_engine(url), sa.create_engine(url)
        instrument_engine(inst_engine, telemetry)
        select1 = sa.text("SELECT 1")
        with bare_engine.connect() as bare_conn, inst_engine.connect() as inst_conn:
            sql = _paired(timed(lambda: bare_conn.execute(select1).scalar()),
                          timed(lambda: inst_conn.execute(select1).scalar()), profile.op_batches, profile.op_batch_size)
        bare_engine.dispose()
        inst_engine.dispose()
        bare_client = redis.Redis(host="127.0.0.1", port=rd.port)
        inst_client = redis.Redis(host="127.0.0.1", port=rd.port)
        instrument_redis(inst_client, telemetry)
        cache = InstrumentedCache(telemetry, inst_client)
        bare_client.set("bench:key", b"x" * 64)
        red = _paired(timed(lambda: bare_client.get("bench:key")), timed(lambda: cache.get("bench:key")),
                      profile.op_batches, profile.op_batch_size * 2)
        bare_client.close()
        inst_client.close()
    for name, (bare_us, inst_us, over) in (("SQLAlchemy SELECT 1 (PostgreSQL)", sql),
                                           ("Redis GET (InstrumentedCache, outside any span)", red)):
        res.checks.append(Check(f"{name}: {bare_us:.0f} us bare, {inst_us:.0f} us instrumented (median of "
                                f"{profile.op_batches} back-to-back batch pairs)",
                                f"{over:+.0%}", f"<= {targets['op_overhead']:.0%}", over <= targets["op_overhead"]))
