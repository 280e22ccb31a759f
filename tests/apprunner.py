"""Run the real demo service (``sizewise-otel demo``) as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, wait_for


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
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sizewise-demo-"))
    log = workdir / "demo.log"
    full_env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
                "ERROR_STORE_URL": f"sqlite:///{workdir / 'errors.db'}", **(env or {})}
    argv = cmd or [sys.executable, "-m", "sizewise_otel.cli", "demo", "--host", "127.0.0.1",
                   "--port", str(port), *(args or [])]
    argv = [a.replace("{port}", str(port)) for a in argv]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=workdir,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"demo exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            return httpx.get(f"{url}/livez", timeout=1).status_code == 200

        wait_for(ready, timeout, "demo service")
        yield RunningApp(url, proc, log, workdir)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
