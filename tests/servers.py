"""Real servers for integration tests: each started on a free loopback port with a temp dir.

Nothing here depends on a system service being up. A missing binary skips the test with a clear
reason, or fails it when SIZEWISE_REQUIRE_INTEGRATION=1 (as in CI). Prometheus, Alertmanager and their
tools are the builds of scripts/build-servers.sh at the versions compose.yaml pins, never whatever a
PATH happens to hold. Every temp dir lives under one session folder that conftest removes at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tools import built_tool

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("SIZEWISE_REQUIRE_INTEGRATION") == "1"


def need(binary: str | None, what: str) -> str:
    """Return the binary path, or skip (fail under SIZEWISE_REQUIRE_INTEGRATION=1)."""
    if binary and (os.path.exists(binary) or shutil.which(binary)):
        return binary if os.path.exists(binary) else shutil.which(binary)  # type: ignore[return-value]
    reason = f"{what} not installed ({binary or 'no binary found'}); run .ci/run or see README"
    if REQUIRE:
        pytest.fail(f"SIZEWISE_REQUIRE_INTEGRATION=1: {reason}")
    pytest.skip(reason)


# Ports are drawn below the kernel's ephemeral range (32768-60999 on Linux), so the client side of some
# other loopback connection cannot take one between free_port() and the server's bind; a port is handed
# out once per process. A server that still finds its port taken is restarted on another (Server.start).
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(500):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


# Settings a developer's shell may hold that would point a test's subprocess at the wrong place.
_INHERITED = re.compile(r"^(OTEL_|SIZEWISE_|PROMETHEUS_URL$|REDIS_URL$|DATABASE_URL$|ERROR_STORE_URL$|"
                        r"MATERIALS_SERVICE_URL$|ALERT_|PYTHONSTARTUP$)")
_KEEP = {"SIZEWISE_GC_FREEZE"}  # set by tests/conftest.py on purpose


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without SizeWise/OTel settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP or not _INHERITED.match(k)}
    return {**env, **(extra or {})}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except RuntimeError:
            raise  # the thing we wait for is gone (e.g. its process exited): no point waiting
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=1.0).status_code == 200


@dataclass
class Server:
    name: str
    port: int
    workdir: Path
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    ready: Callable[[], bool] | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Server:
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt + 1 == attempts or not self._port_taken():
                    raise
                self._move_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> Server:
        # Run as the given user directly (not through runuser), so a stop signal reaches the
        # server itself and not a wrapper that escalates to SIGKILL.
        user_kw = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                env=clean_env(self.env), start_new_session=True, **user_kw,
            )
        try:
            wait_for(lambda: self._alive() and (self.ready or (lambda: port_open(self.port)))(),
                     timeout, self.name)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start; log:\n{self.log.read_text()[-3000:]}") from None
        return self

    def _port_taken(self) -> bool:
        with open(self.log, "rb") as fh:
            fh.seek(getattr(self, "_log_offset", 0))
            return b"address already in use" in fh.read().lower()

    def _move_port(self) -> None:
        """Another process took the port between free_port() and the bind: start on a new one."""
        old, new = str(self.port), str(free_port())
        self.argv = [new if a == old else re.sub(rf"(?<=:){old}$", new, a) for a in self.argv]
        self.port = int(new)

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited; log:\n{self.log.read_text()[-3000:]}")
        return True

    def stop(self, sig: int | None = None, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        sig = self.stop_signal if sig is None else sig
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self, timeout: float = 30.0) -> Server:
        self.stop()
        return self.start(timeout)


_session_tmp: Path | None = None


def session_tmp() -> Path:
    """One folder for every temp dir of this test process, removed when the process ends."""
    global _session_tmp
    if _session_tmp is None:
        _session_tmp = Path(tempfile.mkdtemp(prefix="sizewise-tests-"))
        os.chmod(_session_tmp, 0o755)  # PostgreSQL runs as its own user below it
        atexit.register(remove_session_tmp)
    return _session_tmp


def remove_session_tmp() -> None:
    global _session_tmp
    if _session_tmp is not None:
        shutil.rmtree(_session_tmp, ignore_errors=True)
        _session_tmp = None


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=session_tmp()))


# --- PostgreSQL -------------------------------------------------------------------------------

def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return found[-1] if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    postgres = need(postgres_bin(), "PostgreSQL server (Debian package postgresql)")
    bindir = Path(postgres).parent
    as_root = os.geteuid() == 0
    need("runuser" if as_root else "true", "runuser (util-linux)")
    workdir = tempdir("pg")
    data = workdir / "data"
    user = "postgres" if as_root else None
    if as_root:
        shutil.chown(workdir, "postgres", "postgres")
    port = free_port()
    log = workdir / "server.log"
    cmd = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
           "--no-sync"]
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd] if as_root else cmd,
                   check=True, capture_output=True, cwd=workdir)
    srv = Server(
        "postgresql", port, workdir,
        [postgres, "-D", str(data), "-p", str(port), "-k", str(workdir), "-h", "127.0.0.1",
         "-c", "fsync=off", "-c", "max_connections=100"],
        log, user=user, stop_signal=signal.SIGINT,  # SIGINT: PostgreSQL's fast shutdown
    )
    if as_root:
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    srv.ready = lambda: subprocess.run(
        [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(srv.port), "-U", "postgres"], capture_output=True
    ).returncode == 0
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_url(srv: Server, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
    return f"{driver}://postgres@127.0.0.1:{srv.port}/{database}"


def create_database(srv: Server, name: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url(srv), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return postgres_url(srv, name)


# --- Redis ------------------------------------------------------------------------------------

@contextlib.contextmanager
def redis_server() -> Iterator[Server]:
    binary = need("redis-server", "Redis server (Debian package redis-server)")
    workdir = tempdir("redis")
    port = free_port()
    srv = Server("redis", port, workdir,
                 [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                  "--save", "", "--appendonly", "no", "--protected-mode", "no"],
                 workdir / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- Prometheus / Alertmanager / collector ----------------------------------------------------

def _go_server(name: str, binary: str, data_flag: str, config: Path, extra: list[str]) -> Server:
    """Prometheus or Alertmanager: config file, data dir and listen address; ready at /-/ready."""
    workdir = tempdir(name[:4])
    port = free_port()
    srv = Server(name, port, workdir,
                 [binary, f"--config.file={config}", f"{data_flag}={workdir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}", *extra], workdir / "server.log")
    srv.ready = lambda: http_ok(f"{srv.url}/-/ready")
    return srv


def prometheus_server(config: Path, extra: list[str] | None = None) -> Server:
    binary = need(built_tool("prometheus"), "Prometheus (scripts/build-servers.sh prometheus)")
    return _go_server("prometheus", binary, "--storage.tsdb.path", config, ["--web.enable-lifecycle", *(extra or [])])


def alertmanager_server(config: Path, extra: list[str] | None = None) -> Server:
    binary = need(built_tool("alertmanager"), "Alertmanager (scripts/build-servers.sh alertmanager)")
    return _go_server("alertmanager", binary, "--storage.path", config, ["--cluster.listen-address=", *(extra or [])])


def collector_binary() -> str | None:
    env = os.environ.get("SIZEWISE_OTELCOL")
    if env:
        return env
    built = ROOT / "build" / "otelcol-sizewise" / "otelcol-sizewise"
    return str(built) if built.exists() else None


def need_collector() -> str:
    return need(collector_binary(), "OTel Collector (built by scripts/build-collector.sh)")
