"""Soak: the instrumented demo at saturation, with the error trickle on, for N minutes.

``python bench/soak.py --minutes 1`` (CI) or ``--minutes 30`` (before a release):

- the demo (``sizewise-otel demo --load``: realistic traffic, real 500s from the legacy import
  endpoint) runs on SQLite, or on real PostgreSQL and Redis with ``--servers``;
- wrk (-t1 -c16) drives it at saturation with a fixed mix of routes that never fail by design
  (cached and uncached calculations, project and calculation look-ups, unmatched paths);
- a trickle thread posts malformed imports (5/s), so the error tracker works throughout;
- every few seconds: RSS, a ``/metrics`` scrape and a ``/health`` call are timed.

Pass when: no 5xx on the wrk mix (only the import endpoint may fail, and it is not in the mix),
RSS stays under ``--max-rss-mb`` and grows less than ``--max-growth-mb`` after warm-up, every
``/metrics`` scrape and ``/health`` answer arrives within its budget, and the demo is still alive.
The exit code is 0 on pass, 1 on fail; a summary is printed either way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.proc import free_port, parse_wrk, wait_http  # noqa: E402

API_KEY = "soak-viewer-key"

MIX_LUA = r"""
local bodies = {
  '{"calculation_type": "round_duct", "airflow_cfm": 400}',
  '{"calculation_type": "round_duct", "airflow_cfm": 800}',
  '{"calculation_type": "round_duct", "airflow_cfm": 1200}',
}
local i = 0
local threads = {}
fivexx = 0  -- a global: done() reads it from each thread with thread:get()

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  i = i + 1
  local r = i % 20
  if r == 0 then
    -- uncached: a new airflow every time (cache miss, INSERT)
    local body = '{"calculation_type": "round_duct", "airflow_cfm": ' .. (100 + (i % 5000)) .. '}'
    return wrk.format("POST", "/api/hvac/calculate", {["Content-Type"] = "application/json"}, body)
  elseif r < 12 then
    return wrk.format("POST", "/api/hvac/calculate", {["Content-Type"] = "application/json"},
                      bodies[(i % #bodies) + 1])
  elseif r < 15 then
    return wrk.format("GET", "/api/projects/" .. (i % 50 + 1))
  elseif r < 18 then
    return wrk.format("GET", "/api/hvac/calculations/" .. (i % 100 + 1))
  else
    return wrk.format("GET", "/no/such/page/" .. i)
  end
end

response = function(status, headers, body)
  if status >= 500 then fivexx = fivexx + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("fivexx") or 0) end
  io.write(string.format("soak-5xx: %d\n", total))
end
"""


@dataclass
class Samples:
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    metrics_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    trickle_sent: int = 0
    trickle_500: int = 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def trickle(url: str, stop: threading.Event, out: Samples, per_second: float) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=10) as client:
        n = 0
        while not stop.wait(1.0 / per_second):
            n += 1
            with contextlib.suppress(httpx.HTTPError):
                r = client.post("/api/hvac/import", json={"csv": f"round_duct,12x{n},0.08"})
                out.trickle_sent += 1
                out.trickle_500 += r.status_code == 500


def probe(url: str, stop: threading.Event, out: Samples, pid: int, every: float, budgets: tuple[float, float],
          warmup_s: float, t0: float) -> None:
    import httpx

    metrics_budget, health_budget = budgets
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        while not stop.wait(every):
            elapsed = time.monotonic() - t0
            try:
                out.rss_mb.append((elapsed, rss_mb(pid)))
            except OSError:
                out.failures.append(f"{elapsed:.0f}s: demo process is gone")
                return
            try:
                s = time.perf_counter()
                r = client.get("/metrics")
                ms = (time.perf_counter() - s) * 1e3
                if r.status_code != 200:
                    out.failures.append(f"{elapsed:.0f}s: /metrics answered {r.status_code}")
                if elapsed >= warmup_s:
                    out.metrics_ms.append(ms)
                    if ms > metrics_budget:
                        out.failures.append(f"{elapsed:.0f}s: /metrics took {ms:.0f} ms (budget {metrics_budget:.0f})")
                s = time.perf_counter()
                r = client.get("/health")
                ms = (time.perf_counter() - s) * 1e3
                if r.status_code >= 500 and r.status_code != 503:
                    out.failures.append(f"{elapsed:.0f}s: /health answered {r.status_code}")
                if elapsed >= warmup_s:
                    out.health_ms.append(ms)
                    if ms > health_budget:
                        out.failures.append(f"{elapsed:.0f}s: /health took {ms:.0f} ms (budget {health_budget:.0f})")
            except httpx.HTTPError as exc:
                out.failures.append(f"{elapsed:.0f}s: probe failed: {type(exc).__name__}")


@contextlib.contextmanager
def maybe_servers(enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        yield {}
        return
    from tests import servers as test_servers

    with test_servers.postgres_server() as pg, test_servers.redis_server() as rd:
        url = test_servers.create_database(pg, "soak")
        yield {"DATABASE_URL": url, "ERROR_STORE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{rd.port}/0"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="soak duration (CI: 1)")
    parser.add_argument("--servers", action="store_true", help="real PostgreSQL and Redis (else SQLite + LRU)")
    parser.add_argument("--max-rss-mb", type=float, default=400.0, help="absolute RSS bound")
    parser.add_argument("--max-growth-mb", type=float, default=60.0, help="RSS growth bound after warm-up")
    parser.add_argument("--metrics-budget-ms", type=float, default=1000.0,
                        help="each /metrics scrape, at saturation")
    parser.add_argument("--health-budget-ms", type=float, default=1000.0, help="each /health call, at saturation")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before budgets and growth apply")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (Debian package wrk)")
        return 1
    duration = max(10.0, args.minutes * 60.0)
    workdir = Path(tempfile.mkdtemp(prefix="sizewise-soak-"))
    samples = Samples()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc: subprocess.Popen | None = None
    wrk_out = ""
    try:
        with maybe_servers(args.servers) as server_env:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SIZEWISE_"))}
            env.update({"SIZEWISE_API_KEYS": f"viewer:{API_KEY}", "LOG_LEVEL": "WARNING",
                        "DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
                        "ERROR_STORE_URL": f"sqlite:///{workdir / 'errors.db'}", **server_env})
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
            with open(workdir / "demo.log", "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "sizewise_otel.cli", "demo", "--host", "127.0.0.1", "--port", str(port),
                     "--load", "--load-rate", "20"],
                    cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wait_http(f"{url}/livez", timeout=60, proc=proc)
            script = workdir / "mix.lua"
            script.write_text(MIX_LUA)
            stop = threading.Event()
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=trickle, args=(url, stop, samples, 5.0), daemon=True),
                threading.Thread(target=probe, args=(url, stop, samples, proc.pid, 3.0,
                                                     (args.metrics_budget_ms, args.health_budget_ms),
                                                     args.warmup, t0), daemon=True),
            ]
            for t in threads:
                t.start()
            wrk_out = subprocess.run(
                ["wrk", "-t1", "-c16", f"-d{int(duration)}s", "--latency", "--timeout", "10s", "-s", str(script),
                 url], capture_output=True, text=True, timeout=duration + 120).stdout
            stop.set()
            for t in threads:
                t.join(30)
            alive = proc.poll() is None
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        log_tail = (workdir / "demo.log").read_text(errors="replace")[-2000:] if (workdir / "demo.log").exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)

    return report(args, duration, samples, wrk_out, alive, log_tail)


def report(args: argparse.Namespace, duration: float, samples: Samples, wrk_out: str, alive: bool,
           log_tail: str) -> int:
    import re

    failures = list(samples.failures)
    result = parse_wrk(wrk_out) if "Requests/sec" in wrk_out else None
    fivexx_match = re.search(r"soak-5xx: (\d+)", wrk_out)
    fivexx = int(fivexx_match.group(1)) if fivexx_match else -1
    if result is None:
        failures.append("wrk produced no result")
    if fivexx != 0:
        failures.append(f"{fivexx} responses with 5xx on the non-failing route mix")
    if not alive:
        failures.append("the demo exited during the soak")
    rss = [mb for t, mb in samples.rss_mb]
    after_warmup = [mb for t, mb in samples.rss_mb if t >= args.warmup]
    peak = max(rss) if rss else float("nan")
    growth = (after_warmup[-1] - after_warmup[0]) if len(after_warmup) > 1 else 0.0
    if rss and peak > args.max_rss_mb:
        failures.append(f"RSS peaked at {peak:.0f} MB (bound {args.max_rss_mb:.0f})")
    if growth > args.max_growth_mb:
        failures.append(f"RSS grew {growth:.0f} MB after warm-up (bound {args.max_growth_mb:.0f})")
    if samples.trickle_sent and not samples.trickle_500:
        failures.append("the error trickle produced no 500s (is the legacy import bug still there?)")

    def stats(values: list[float]) -> str:
        if not values:
            return "n/a"
        return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms ({len(values)} samples)"

    print(f"sizewise-otel soak: {duration:.0f} s at saturation (wrk -t1 -c16), error trickle 5/s"
          f"{', PostgreSQL + Redis' if args.servers else ', SQLite + in-process cache'}")
    if result is not None:
        print(f"  throughput      {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
              f"{result.requests:,} requests, socket errors {result.errors}")
    print(f"  5xx on the mix  {fivexx}")
    print(f"  error trickle   {samples.trickle_sent} sent, {samples.trickle_500} answered 500 (expected: all)")
    print(f"  RSS             start {rss[0] if rss else float('nan'):.0f} MB, peak {peak:.0f} MB, "
          f"growth after warm-up {growth:+.1f} MB (bounds {args.max_rss_mb:.0f} / {args.max_growth_mb:.0f} MB)")
    print(f"  /metrics        {stats(samples.metrics_ms)} (budget {args.metrics_budget_ms:.0f} ms)")
    print(f"  /health         {stats(samples.health_ms)} (budget {args.health_budget_ms:.0f} ms)")
    if failures:
        print("FAIL:")
        for f in failures[:20]:
            print(f"  - {f}")
        if not alive:
            print("demo log tail:\n" + log_tail)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
