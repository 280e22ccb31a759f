"""Servers under test and the load generator: start/stop, CPU and RSS from /proc, wrk runs.

A server is any argv (uvicorn variant, gunicorn with workers) started in its own session with a
clean environment; its CPU time is summed over the whole process tree (gunicorn's master and
workers), so a figure per request is the service's, whatever the process model.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}\n{tail}")
        with contextlib.suppress(Exception):
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def venv_tool(name: str) -> str:
    """A console script beside the interpreter (gunicorn), never PATH's."""
    path = Path(sys.executable).parent / name
    if not (path.exists() and os.access(path, os.X_OK)):
        raise RuntimeError(f"{name} is not installed beside {sys.executable} (pip install -e '.[bench]')")
    return str(path)


def wrk_binary() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)
    if not found:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    return found


def cpu_plan() -> tuple[set[int], set[int]] | None:
    """(server CPUs, load-generator CPUs): the first usable CPU serves, the others load it.

    Pinning keeps the scheduler from sometimes putting wrk and the server on one core and
    sometimes on two, the largest source of run-to-run spread on a 2-core machine. Every variant
    gets the same placement. ``BENCH_PIN=0`` leaves placement to the scheduler.
    """
    if os.environ.get("BENCH_PIN", "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


CPU_PLAN = cpu_plan()


def on_loadgen(argv: list[str]) -> list[str]:
    """``argv`` started on the load generator's CPUs, through util-linux's ``taskset``.

    Not a ``preexec_fn``: that forks this process with Python running in the child, and the gunicorn
    rows' in-process gRPC trace sink has fork handlers that abort such a child (wrk "died with
    SIGABRT" in a full run). Without it, subprocess spawns without running any of them.
    """
    if CPU_PLAN is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is needed to pin wrk; BENCH_PIN=0 runs unpinned")
    return [taskset, "-c", ",".join(map(str, sorted(CPU_PLAN[1]))), *argv]


def pin_beside_loadgen(pid: int) -> None:
    """Put a dependency of the server (PostgreSQL, Redis, the collector) on the load generator's
    CPUs, every thread of every process of it: the server's CPU then runs the server alone, in
    every variant alike (a backend PostgreSQL forks later inherits the mask)."""
    if CPU_PLAN is None:
        return
    for proc in _tree(pid):
        for task in Path(f"/proc/{proc}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                os.sched_setaffinity(int(task.name), CPU_PLAN[1])


def harness_beside_loadgen() -> None:
    """Put this process on the load generator's CPUs, with every thread it starts from now on.

    The harness hosts the gunicorn rows' trace sink (the stand-in for a tracing backend, an
    in-process gRPC server): on the server's CPU it would take time from the instrumented server
    only, as the collector would. Servers pin themselves to their CPU when started; in-process
    measurements use :func:`on_server_cpu`.
    """
    if CPU_PLAN is not None:
        os.sched_setaffinity(0, CPU_PLAN[1])


@contextlib.contextmanager
def on_server_cpu() -> Iterator[None]:
    """Run the calling thread on the server's CPUs for a while (in-process measurements; Linux's
    affinity is per thread, so the process's other threads keep theirs)."""
    if CPU_PLAN is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, CPU_PLAN[0])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def stat_ticks(stat: Path) -> int:
    """User + system CPU clock ticks from a ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat`` file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without OTEL_*/SIZEWISE_*, so every variant runs at its defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SIZEWISE_", "BENCH_VARIANT"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    ready_path: str
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 90.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in self.argv],
                                         cwd=self.workdir, env=clean_env(self.env), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if CPU_PLAN is not None:  # threads and forked workers inherit the mask
            os.sched_setaffinity(self.proc.pid, CPU_PLAN[0])
        wait_http(self.url + self.ready_path, timeout, self.proc, self.log)
        return self

    def pids(self) -> list[int]:
        assert self.proc is not None
        return _tree(self.proc.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time of every process of the server, all threads (from /proc)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += stat_ticks(Path(f"/proc/{pid}/stat"))
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def uvicorn_server(module: str, variant: str, workdir: Path, ready_path: str, env: dict[str, str]) -> Server:
    port = free_port()
    return Server(f"{module}:{variant}", [sys.executable, "-m", module, variant, "{port}"], env,
                  workdir / f"{module}-{variant}", ready_path, port)


def gunicorn_server(module: str, variant: str, workdir: Path, ready_path: str, env: dict[str, str],
                    workers: int = 2) -> Server:
    port = free_port()
    argv = [venv_tool("gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w", str(workers),
            "-b", "127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "10", f"{module}:app"]
    return Server(f"gunicorn {module}:{variant}", argv, {**env, "BENCH_VARIANT": variant},
                  workdir / f"gunicorn-{module}-{variant}", ready_path, port)


# --- wrk --------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int = 0
    errors: int = 0
    cpu_us: float = float("nan")  # server CPU per request


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> WrkResult:
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out[-2000:]}")
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    req = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(float(found.group(1)), _ms(p50.group(1)) if p50 else float("nan"),
                     _ms(p99.group(1)) if p99 else float("nan"), int(req.group(1)) if req else 0,
                     int(non2xx.group(1)) if non2xx else 0, sum(int(x) for x in errors.groups()) if errors else 0)


def wrk(url: str, seconds: float, *, connections: int = 16, script: Path | None = None,
        env: dict[str, str] | None = None) -> WrkResult:
    argv = [wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(on_loadgen([*argv, url]), capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}, timeout=seconds + 60).stdout
    return parse_wrk(out)


def measured(server: Server, url: str, seconds: float, script: Path | None = None) -> WrkResult:
    """One wrk run with the server's CPU per request beside it."""
    cpu0 = server.cpu_seconds()
    got = wrk(url, seconds, script=script)
    got.cpu_us = (server.cpu_seconds() - cpu0) / max(got.requests, 1) * 1e6
    return got


def wrk_count(server: Server, script: Path, requests: int, seed: int) -> WrkResult:
    """Run wrk until the Lua script has sent ``requests``, then stop it.

    wrk's main thread sleeps for the whole ``-d`` even after the script stops its threads, so the
    run is ended with SIGINT (wrk then prints its summary) once the server has gone idle.
    """
    env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_SEED": str(seed)}
    proc = subprocess.Popen(on_loadgen([wrk_binary(), "-t1", "-c16", f"-d{requests // 200 + 60}s", "--latency",
                                        "-s", str(script), server.url]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(2.0)
    last = server.cpu_seconds()
    while proc.poll() is None:
        time.sleep(1.0)
        now = server.cpu_seconds()
        if now - last < 0.05:  # idle: the script has stopped sending
            proc.send_signal(signal.SIGINT)
            break
        last = now
    out, _ = proc.communicate(timeout=60)
    return parse_wrk(out)
