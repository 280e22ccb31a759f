"""Instructions a request, counted by callgrind: figures that do not swing with the machine.

    python bench/figures.py instructions

Time on this machine swings about 2x within minutes; the instructions a request executes do not.
Valgrind's callgrind counts them, and simulates the L1 caches, for:

- the HTTP layer in its hot loop (``where.LayerLoop``): a request not sampled and one sampled, each
  minus the app alone;
- a whole uvicorn server, bare FastAPI and ``instrument()`` (also with OTLP export on, to a loopback
  sink), answering ``GET /ping`` one request at a time on one keep-alive connection: the event-loop
  thread's instructions and L1 misses a request.

Counting starts after start-up and a warm-up (``--instr-atstart=no``, switched on and off with
``callgrind_control``). Under valgrind everything runs about 50 times slower, so periodic work would
land on about 50 times fewer requests than it does: the servers run with it pushed out of the counted
window (``PERIODIC_OFF``: the dashboard sampler off, health refresh and alert evaluation every 10 minutes
or more), and what other threads still do is printed apart, not as a request's cost.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.apps import TRIVIAL_PATH
from bench.parts import _app_env
from bench.proc import free_port
from bench.report import print_figures
from tests import webhook

ROOT = Path(__file__).resolve().parent.parent
# Deterministic and valgrind-friendly: one hash seed, the system allocator (valgrind tracks it).
_ENV = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"}
# Periodic work, not a request's: out of the counted window (see the module docstring).
PERIODIC_OFF = {"PERFORMANCE_DASHBOARD_ENABLED": "false", "HEALTH_CACHE_TTL_SECONDS": "600",
                "METRICS_COLLECTION_INTERVAL": "3600"}


def _valgrind() -> str:
    found = shutil.which("valgrind")
    if not found or not shutil.which("callgrind_control") or not shutil.which("callgrind_annotate"):
        raise RuntimeError("valgrind is not installed (Debian package valgrind)")
    return found


def _argv(out: Path, threads: bool) -> list[str]:
    return [_valgrind(), "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes",
            f"--separate-threads={'yes' if threads else 'no'}", f"--callgrind-out-file={out}"]


def counting(pid: int, on: bool) -> None:
    """Switch callgrind's counting in process ``pid`` on or off (returns once it took effect)."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True, capture_output=True)


def totals(path: Path) -> dict[str, int]:
    """The totals of one callgrind output file: Ir, I1mr, D1mr, D1mw, ... (empty if it counted nothing)."""
    text = subprocess.run(["callgrind_annotate", str(path)], capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    shown = next((line for line in lines if line.startswith("Events shown:")), None)
    total = next((line for line in lines if "PROGRAM TOTALS" in line), None)
    if shown is None or total is None:
        return {}
    values = [int(v) for v in total.replace(",", "").split() if v.isdigit()]
    return dict(zip(shown.split(":", 1)[1].split(), values, strict=False))


def _misses(t: dict[str, int]) -> int:
    return t.get("I1mr", 0) + t.get("D1mr", 0) + t.get("D1mw", 0)


# --- the HTTP layer in its loop ---------------------------------------------------------------

def layer_child(ratio: float, n: int, layered: bool) -> None:
    """Run inside valgrind: warm up, then count ``n`` calls (of the layer, or the app alone)."""
    from bench.where import LayerLoop

    loop = LayerLoop(ratio)
    asyncio.run(loop.run(3000, layered))
    counting(os.getpid(), True)
    asyncio.run(loop.run(n, layered))
    counting(os.getpid(), False)
    os._exit(0)  # no shutdown work counted or waited for


def _layer(ratio: float, n: int, layered: bool, wd: Path) -> dict[str, int]:
    out = wd / f"layer-{ratio}-{layered}.out"
    code = f"from bench.instructions import layer_child; layer_child({ratio!r}, {n}, {layered!r})"
    subprocess.run([*_argv(out, threads=False), sys.executable, "-c", code], cwd=ROOT, check=True,
                   env={**os.environ, **_ENV}, capture_output=True)
    return {k: v // n for k, v in totals(out).items()}


# --- a whole server ---------------------------------------------------------------------------

def _server(variant: str, n: int, wd: Path, extra: dict[str, str] | None = None,
            name: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(event-loop thread, every other thread) counts a request of ``bench.apps VARIANT`` under uvicorn."""
    name = name or variant
    out, port = wd / f"server-{name}.out", free_port()
    env = {**os.environ, **_app_env(wd, name), **_ENV, **PERIODIC_OFF, **(extra or {})}
    proc = subprocess.Popen([*_argv(out, threads=True), sys.executable, "-m", "bench.apps", variant, str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = _connect(port, proc)
        for _ in range(300):  # warm-up
            _get(conn)
        counting(proc.pid, True)
        for _ in range(n):
            _get(conn)
        counting(proc.pid, False)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    threads = sorted(wd.glob(f"server-{name}.out-*"))
    counted = [totals(f) for f in threads]
    main = {k: v // n for k, v in counted[0].items()} if counted else {}
    others: dict[str, int] = {}
    for t in counted[1:]:
        for k, v in t.items():
            others[k] = others.get(k, 0) + v // n
    return main, others


def _connect(port: int, proc: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    import time

    deadline = time.monotonic() + 300  # start-up under valgrind takes a minute or more
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server under valgrind exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            _get(conn)
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _get(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", TRIVIAL_PATH)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {TRIVIAL_PATH} answered {response.status}")


def instructions(calls: int = 2000, requests: int = 1500) -> None:
    wd = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    alone = _layer(0.0, calls, False, wd)
    rows = []
    for label, ratio in (("not sampled", 0.0), ("sampled", 1.0)):
        layered = _layer(ratio, calls, True, wd)
        rows.append((f"HTTP layer in a loop, a request {label}: added instructions",
                     f"{layered['Ir'] - alone['Ir']:,}"))
    rows.append(("the app alone in that loop, a call", f"{alone['Ir']:,}"))
    counted = {v: _server(v, requests, wd) for v in ("bare", "sizewise")}
    with webhook.receiver() as (endpoint, _):  # instrument() exporting spans and metrics over OTLP/HTTP
        counted["sizewise + OTLP"] = _server("sizewise", requests, wd, {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
                                             name="sizewise-otlp")
    for v, (main, others) in counted.items():
        rows.append((f"uvicorn {v}: event-loop thread, a request (instructions; L1 misses)",
                     f"{main['Ir']:,}; {_misses(main):,}"))
        rows.append((f"uvicorn {v}: other threads (export, sampling; see above)", f"{others.get('Ir', 0):,}"))
    (bare, _), (ours, _) = counted["bare"], counted["sizewise"]
    rows.append(("instrument() added on the event-loop thread (instructions; L1 misses)",
                 f"+{ours['Ir'] - bare['Ir']:,} ({(ours['Ir'] / bare['Ir'] - 1) * 100:+.1f} %); "
                 f"+{_misses(ours) - _misses(bare):,} ({(_misses(ours) / _misses(bare) - 1) * 100:+.1f} %)"))
    print_figures(f"Instructions a request (callgrind; {calls:,} loop calls, {requests:,} sequential requests)", rows,
                  width=72)


# --- the demo route in-process ----------------------------------------------------------------

DEMO_VARIANTS = {  # name -> (bench.demo_parts variant, environment)
    "bare": ("bare", {}),
    "not sampled": ("sizewise", {"OTEL_TRACES_SAMPLER_ARG": "0"}),
    "every request sampled": ("sizewise", {"OTEL_TRACES_SAMPLER_ARG": "1"}),
}


def _demo_counts(name: str, index: int, n: int, wd: Path, tree: Path, pg: Any, rd: Any) -> tuple[int, int, int]:
    """(event-loop thread, the store's worker thread, every other thread) instructions a request."""
    from bench.demo_parts import _read
    from bench.parts import _demo_env
    from bench.proc import clean_env

    variant, extra = DEMO_VARIANTS[name]
    out = wd / f"demo-{index}.out"
    env = {**_demo_env(wd, f"instr-{index}", pg, rd, index), **_ENV, **PERIODIC_OFF, **extra}
    proc = subprocess.Popen([*_argv(out, threads=True), sys.executable, "-m", "bench.demo_parts", variant],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env(env), cwd=tree,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    try:
        _read(proc)  # started and warmed up (bench.demo_parts runs 300 requests first)
        for size, counted in ((50, False), (n, True)):
            if counted:
                counting(proc.pid, True)
            proc.stdin.write(f"{size}\n")
            proc.stdin.flush()
            statuses = _read(proc).split(" ", 1)[1]
            if counted:
                counting(proc.pid, False)
            if set(json.loads(statuses)) != {"201"}:
                raise RuntimeError(f"{name}: answers other than 201: {statuses}")
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    per_thread = [totals(f).get("Ir", 0) // n for f in sorted(wd.glob(f"demo-{index}.out-*"))]
    main, rest = per_thread[0], sorted(per_thread[1:], reverse=True)
    return main, rest[0] if rest else 0, sum(rest[1:])


def demo_instructions(requests: int = 200) -> None:
    """The demo's POST /api/hvac/calculate in-process (bench.demo_parts) under callgrind: instructions a
    request, by thread, bare and instrument() with no request sampled and with every one sampled.

    ``BENCH_TREE=DIR`` runs the app processes from another checkout (an older commit, for a before/after)."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.parts import pg_redis

    tree = Path(os.environ.get("BENCH_TREE") or ROOT).resolve()
    wd = Path(tempfile.mkdtemp(prefix="bench-demo-instructions-"))
    with pg_redis() as (pg, rd), ThreadPoolExecutor(2) as pool:
        counted = dict(zip(DEMO_VARIANTS, pool.map(
            lambda item: _demo_counts(item[1], item[0], requests, wd, tree, pg, rd), enumerate(DEMO_VARIANTS)),
            strict=True))
    bare = sum(counted["bare"][:2])
    rows = []
    for name, (main, worker, rest) in counted.items():
        rows.append((f"{name}: event loop + store worker; other threads",
                     f"{main:,} + {worker:,} = {main + worker:,} ({main + worker - bare:+,}); {rest:,}"))
    unsampled, sampled = (sum(counted[k][:2]) for k in ("not sampled", "every request sampled"))
    rows.append(("a sampled request adds (every request sampled - not sampled)", f"{sampled - unsampled:+,}"))
    rows.append(("at the default 10 % sampling, over bare", f"{unsampled + (sampled - unsampled) // 10 - bare:+,} "
                 f"({(unsampled + (sampled - unsampled) / 10) / bare * 100 - 100:+.1f} %)"))
    print_figures(f"Instructions a demo POST /api/hvac/calculate (callgrind, in-process, real PostgreSQL and Redis, "
                  f"{requests} requests counted; tree {tree.name})", rows, width=64)
