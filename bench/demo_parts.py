"""Where the demo route's added cost goes: ``python bench/figures.py demo``.

The demo's ``POST /api/hvac/calculate`` (one cache get and set, one INSERT, on real PostgreSQL and Redis)
called in-process through ASGI (no server, no socket, no wrk), one process per variant, the processes
taking turns: each runs a batch of requests and reports its CPU time a request (every thread, so the
store's worker threads too). Without a server's event loop and HTTP parsing the figure is steadier
than the wrk rows and can switch single parts of ``instrument()`` off:

- ``bare``: the demo without telemetry (``bench.demo_apps``);
- ``sizewise``: the demo as shipped (``instrument()`` defaults);
- ``no-sql``: the same without the SQLAlchemy engine's instrumentation;
- ``no-redis``: the same without the Redis client's instrumentation;
- ``plain-cache``: the same with the bare demo's plain cache instead of ``InstrumentedCache``;
- ``unsampled``: the same with no trace sampled (``OTEL_TRACES_SAMPLER_ARG=0``);
- ``all-sampled``: the same with every trace sampled (``OTEL_TRACES_SAMPLER_ARG=1``), which prices a sampled
  request: (all-sampled - unsampled) is what each sampled request adds.

``python -m bench.demo_parts VARIANT`` is one such process (driven through stdin and stdout).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, tuple[str, dict[str, str]]] = {  # name -> (demo_apps variant, environment)
    "bare": ("bare", {}),
    "sizewise": ("sizewise", {}),
    "no-sql": ("sizewise", {"BENCH_DEMO_OFF": "sql"}),
    "no-redis": ("sizewise", {"BENCH_DEMO_OFF": "redis"}),
    "plain-cache": ("sizewise", {"BENCH_DEMO_OFF": "cache"}),
    "unsampled": ("sizewise", {"OTEL_TRACES_SAMPLER_ARG": "0"}),
    "all-sampled": ("sizewise", {"OTEL_TRACES_SAMPLER_ARG": "1"}),
}
LABELS = {
    "bare": "demo without telemetry",
    "sizewise": "instrument() as shipped",
    "no-sql": "... without the SQL instrumentation",
    "no-redis": "... without the Redis client instrumentation",
    "plain-cache": "... with a plain cache, not InstrumentedCache",
    "unsampled": "... with no trace sampled",
    "all-sampled": "... with every trace sampled",
}
_MARK = "@@"  # the driver reads only lines with it (the app logs to stdout too)
_WARMUP = 300


def _build(variant: str) -> Any:
    from bench import demo_apps

    off = set(filter(None, os.environ.get("BENCH_DEMO_OFF", "").split(",")))
    if off:
        import sizewise_otel.instrumentation as instrumentation
        from sizewise_otel.demo import service

        if "sql" in off:
            instrumentation.instrument_engine = lambda *_, **__: None  # type: ignore[assignment]
        if "redis" in off:
            instrumentation.instrument_redis = lambda *_, **__: None  # type: ignore[assignment]
        if "cache" in off:
            service.InstrumentedCache = demo_apps.PlainCache  # type: ignore[assignment,misc]
    return demo_apps.build(variant)


async def _serve_batches(app: Any) -> None:
    """Start the app's lifespan, warm up, then run one batch per stdin line (its size) until an empty one."""
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    await lifespan.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   lifespan.get, lifespan_send))
    await started.wait()
    rng = random.Random(1)
    statuses: dict[int, int] = {}
    base = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 5555), "scheme": "http", "method": "POST", "root_path": "",
            "path": "/api/hvac/calculate", "raw_path": b"/api/hvac/calculate", "query_string": b""}

    async def one() -> None:
        # A new calculation every request, as bench/run.py's wrk script sends: a cache miss, a set, an INSERT.
        body = json.dumps({"calculation_type": "round_duct", "airflow_cfm": 300 + rng.random() * 1500}).encode()
        scope = {**base, "state": {}, "headers": [
            (b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]}
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # a disconnect never comes: the request is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    for _ in range(_WARMUP):
        await one()
    print(_MARK + "ready", flush=True)
    loop = asyncio.get_running_loop()
    while n := int((await loop.run_in_executor(None, sys.stdin.readline)).strip() or 0):
        cpu0 = time.process_time()
        for _ in range(n):
            await one()
        cpu_us = (time.process_time() - cpu0) / n * 1e6
        print(f"{_MARK}{cpu_us:.2f} {json.dumps(statuses)}", flush=True)
    lifespan.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)


def _read(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(_MARK):
            return line[len(_MARK):].strip()
    raise RuntimeError(f"a demo process ended early (exit {proc.wait()})")


def figure(rounds: int = 15, batch: int = 400) -> None:
    from bench.parts import _demo_env, pg_redis
    from bench.proc import CPU_PLAN, clean_env
    from bench.report import print_figures

    wd = Path(tempfile.mkdtemp(prefix="bench-demo-parts-"))
    with pg_redis() as (pg, rd):
        procs: dict[str, subprocess.Popen[str]] = {}
        try:
            for i, (name, (variant, extra)) in enumerate(VARIANTS.items()):
                env = {**_demo_env(wd, f"parts-{i}", pg, rd, i), **extra}
                procs[name] = subprocess.Popen([sys.executable, "-m", "bench.demo_parts", variant],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                               env=clean_env(env), cwd=Path(__file__).resolve().parent.parent)
                if CPU_PLAN is not None:  # the server's CPU; PostgreSQL and Redis are on the other
                    os.sched_setaffinity(procs[name].pid, CPU_PLAN[0])
            for proc in procs.values():
                _read(proc)
            cpu: dict[str, list[float]] = {name: [] for name in procs}
            for r in range(rounds):
                for name in (list(procs) if r % 2 == 0 else list(procs)[::-1]):
                    proc = procs[name]
                    assert proc.stdin is not None
                    proc.stdin.write(f"{batch}\n")
                    proc.stdin.flush()
                    value, statuses = _read(proc).split(" ", 1)
                    if set(json.loads(statuses)) != {"201"}:
                        raise RuntimeError(f"{name}: answers other than 201: {statuses}")
                    cpu[name].append(float(value))
        finally:
            for proc in procs.values():
                if proc.stdin is not None and proc.poll() is None:
                    proc.stdin.write("\n")
                    proc.stdin.flush()
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    bare = statistics.median(cpu["bare"])
    rows = []
    for name, values in cpu.items():
        med = statistics.median(values)
        rows.append((f"{name}: {LABELS[name]}", f"{med:.0f} us ({med - bare:+.0f})"))
    print_figures(f"The demo's POST /api/hvac/calculate in-process (ASGI, real PostgreSQL and Redis), CPU a request "
                  f"(all threads), {rounds} alternating batches of {batch}, medians", rows, width=64)


if __name__ == "__main__":
    asyncio.run(_serve_batches(_build(sys.argv[1])))
