"""A library inside someone else's service (issue 17): ranges for what a service shares, a slim runtime.

pyproject.toml must not pin a shared package exactly, must keep authoring, demo and test tools out of the
runtime dependencies, and its ranges must admit both the documented floors and the newest tested versions.
The matrix lock files (ci/locks/) must satisfy those ranges, and `instrument()` must run with every
authoring/demo package made unimportable.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.tools import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CELLS = ("floor", "middle", "newest")

# What a host service shares with the library -> the documented floor (docs/compatibility.md).
FLOORS = {
    "fastapi": "0.115.0", "starlette": "0.40.0", "pydantic": "2.7.0", "httpx": "0.27.0", "sqlalchemy": "2.0.30",
    "opentelemetry-api": "1.33.1", "opentelemetry-sdk": "1.33.1", "opentelemetry-instrumentation": "0.54b1",
    "opentelemetry-instrumentation-fastapi": "0.54b1", "opentelemetry-exporter-prometheus": "0.54b1",
    "redis": "5.0.0",
}
# Used to author dashboards/rules, run the demo, test or bench: never installed into a service by default.
NOT_RUNTIME = {
    "grafana-foundation-sdk", "promql-parser", "pyyaml", "uvicorn", "gunicorn", "redis", "psycopg", "grpcio",
    "opentelemetry-exporter-otlp-proto-grpc", "pytest", "pytest-asyncio", "ruff", "schemathesis",
    "check-jsonschema", "kubernetes-validate", "jsonschema", "pyinstrument", "py-spy",
    "prometheus-fastapi-instrumentator",
    # Its readings come from SystemMetrics; zero-code mode gives it an empty selection when a service has it.
    "opentelemetry-instrumentation-system-metrics",
}
# Upper bounds allowed only where a known break exists (the reason is beside the pin in pyproject.toml).
KNOWN_BREAKS = {"sqlalchemy": "2.1"}


def _reqs(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, specs)}


RUNTIME = _reqs(PROJECT["dependencies"])
EXTRAS = {name: _reqs(specs) for name, specs in PROJECT["optional-dependencies"].items()}


def _shared(name: str) -> bool:
    return name in FLOORS or name.startswith("opentelemetry-")


def _lock(cell: str) -> dict[str, Version]:
    text = (ROOT / "ci" / "locks" / f"{cell}.txt").read_text()
    return {canonicalize_name(n): Version(v) for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_no_exact_pin_on_a_shared_package() -> None:
    everywhere = [(where, r) for where, reqs in [("runtime", RUNTIME), *EXTRAS.items()] for r in reqs.values()]
    pinned = [f"{where}: {r}" for where, r in everywhere
              if _shared(canonicalize_name(r.name)) and any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, pinned


def test_upper_bounds_only_at_known_breaks() -> None:
    for name, req in RUNTIME.items():
        uppers = {s.version for s in req.specifier if s.operator in ("<", "<=")}
        assert uppers <= ({KNOWN_BREAKS[name]} if name in KNOWN_BREAKS else set()), req


def test_runtime_has_no_authoring_demo_or_test_tool() -> None:
    assert not set(RUNTIME) & NOT_RUNTIME, sorted(set(RUNTIME) & NOT_RUNTIME)


def test_extras_split_as_documented() -> None:
    assert {"otlp-grpc", "demo", "render", "test", "bench"} <= set(EXTRAS)
    assert "opentelemetry-exporter-otlp-proto-grpc" in EXTRAS["otlp-grpc"]
    assert {"grafana-foundation-sdk", "promql-parser"} <= set(EXTRAS["render"])
    # The test suite renders artifacts and runs the demo stack: [test] pulls both in.
    self_extras = set(EXTRAS["test"]["sizewise-otel"].extras)
    assert {"render", "demo", "otlp-grpc"} <= self_extras
    demo = set(EXTRAS["demo"]) | {n for e in EXTRAS["demo"]["sizewise-otel"].extras for n in EXTRAS[e]}
    assert {"uvicorn", "redis", "psycopg"} <= demo


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_ranges_admit_the_floor_and_the_newest_tested(name: str) -> None:
    req = RUNTIME.get(name) or EXTRAS["demo"].get(name)
    assert req is not None, f"{name} is not declared"
    floor = Version(FLOORS[name])
    assert req.specifier.contains(floor, prereleases=True), (str(req), floor)
    # The floor is the range's own lower bound (to the release): nothing below it is claimed untested.
    lower = max((Version(s.version) for s in req.specifier if s.operator == ">="), default=None)
    assert lower is not None and lower.release <= floor.release, str(req)
    newest = _lock("newest")[name]
    assert req.specifier.contains(newest, prereleases=True), (str(req), newest)


@pytest.mark.parametrize("cell", CELLS)
def test_lock_satisfies_the_ranges_and_pairs_otel(cell: str) -> None:
    lock = _lock(cell)
    wanted = {**RUNTIME, **EXTRAS["test"], **EXTRAS["demo"], **EXTRAS["render"]}
    for name, req in wanted.items():
        if name == "sizewise-otel":
            continue
        assert name in lock, f"{cell}: {name} not locked"
        assert req.specifier.contains(lock[name], prereleases=True), f"{cell}: {name}=={lock[name]} vs {req}"
    core, contrib = lock["opentelemetry-sdk"], lock["opentelemetry-instrumentation"]
    assert contrib.release[1] == core.release[1] + 21, (cell, core, contrib)  # 0.Xb pairs with 1.(X-21)


def test_floor_cell_runs_the_documented_floors() -> None:
    lock = _lock("floor")
    for name, floor in FLOORS.items():
        got, want = lock[name], Version(floor)
        # Same minor line as the floor (a patch release of it may be the first that installs together).
        assert got.release[:2] == want.release[:2], (name, got, want)


def test_instrument_runs_without_authoring_or_demo_packages(tmp_path) -> None:
    """The slim runtime: with every non-runtime package unimportable, instrument() serves /metrics."""
    blocked = ["grafana_foundation_sdk", "promql_parser", "yaml", "uvicorn", "gunicorn", "redis", "psycopg",
               "grpc", "pytest", "schemathesis", "opentelemetry.instrumentation.system_metrics"]
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
                    raise ModuleNotFoundError(f"blocked: {{name}}")
        for m in [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in {blocked!r})]:
            del sys.modules[m]
        sys.meta_path.insert(0, Block())
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        from sizewise_otel import instrument
        app = FastAPI()
        @app.get("/ping")
        def ping() -> dict:
            return {{"ok": True}}
        handle = instrument(app)
        with TestClient(app) as client:
            for _ in range(3):
                assert client.get("/ping").status_code == 200
            text = client.get("/metrics").text
        import asyncio
        asyncio.run(handle.shutdown())
        line = [ln for ln in text.splitlines()
                if ln.startswith("http_server_request_duration_seconds_count") and 'http_route="/ping"' in ln]
        print(line[0].rsplit(" ", 1)[1])
    """)
    # A clean environment and a scratch cwd: the default SQLite error store lands there.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) == 3.0, proc.stdout[-2000:]
