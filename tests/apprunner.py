"""Run the real demo service (``sizewise-otel demo``) as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import clean_env, free_port, tempdir, wait_for


@dataclass
class RunningApp:
    url: str
    proc: subprocess.Popen
    log: Path
    workdir: Path

    def metrics_text(self, headers: dict[str, str] | None = None) -> str:
        resp = httpx.get(f"{self.url}/metrics", timeout=10, headers=headers)
        resp.raise_for_status()
        return resp.text

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return parse_samples(self.metrics_text())


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, dict(s.labels), s.value))
    return out


@contextlib.contextmanager
def run_demo(env: dict[str, str] | None = None, args: list[str] | None = None,
             timeout: float = 30.0, cmd: list[str] | None = None) -> Iterator[RunningApp]:
    """The demo (or ``cmd``, with ``{port}`` for its port) in a clean environment, until the block ends."""
    workdir = tempdir("demo")
    log = workdir / "demo.log"
    full_env = clean_env({"DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
                          "ERROR_STORE_URL": f"sqlite:///{workdir / 'errors.db'}", **(env or {})})
    template = cmd or [sys.executable, "-m", "sizewise_otel.cli", "demo", "--host", "127.0.0.1",
                       "--port", "{port}", *(args or [])]
    for attempt in range(3):
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in template]
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=workdir,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def ready(proc: subprocess.Popen = proc, url: str = url) -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"demo exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            return httpx.get(f"{url}/livez", timeout=1).status_code == 200

        try:
            wait_for(ready, timeout, "demo service")
            break
        except Exception:
            stop(proc)
            taken = b"address already in use" in log.read_bytes()[offset:].lower()
            if attempt == 2 or not taken:  # retried only when another process took the port first
                raise
    try:
        yield RunningApp(url, proc, log, workdir)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
