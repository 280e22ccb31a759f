"""Long-term storage with the real binaries: the demo (gunicorn, 2 workers) exports through the built
collector; a Prometheus pair (copies of prometheus/prometheus-ha.yml, replicas `a` and `b`, the
generated rules) scrapes it and remote-writes to VictoriaMetrics run with compose's flags
(retention, dedup). Both replicas write every series; VictoriaMetrics must hold one copy, and every
Grafana panel's PromQL must return data from VictoriaMetrics as it does from Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from sizewise_otel.demo.load import run_load
from tests import ha, servers, stack
from tests.integration.test_stack_e2e import (
    DASHBOARDS,
    _dashboard,
    _expand,
    _targets,
    _variables,
    app_env,
    gunicorn_argv,
    start_materials,
)

pytestmark = pytest.mark.integration

WINDOW = 20  # seconds of 1 s scrapes compared between the stores
DEADLINE = 90.0


@dataclass
class HAStack:
    proms: list[servers.Server]
    vm: servers.Server
    app: servers.Server


@pytest.fixture(scope="module")
def ha_stack(postgres: servers.Server, redis_srv: servers.Server) -> Iterator[HAStack]:
    database_url = servers.create_database(postgres, "ha_remote_write")
    if redis_srv.proc is None or redis_srv.proc.poll() is not None:
        redis_srv.start()
    with contextlib.ExitStack() as cleanup:
        sink = stack.TraceSink()
        cleanup.callback(sink.stop)
        collector = stack.start_collector(sink.endpoint)
        cleanup.callback(collector.stop)
        vm = ha.victoriametrics_server()
        cleanup.callback(shutil.rmtree, vm.workdir, ignore_errors=True)
        vm.start(timeout=60)
        cleanup.callback(vm.stop)
        tmp = servers.tempdir("ha-rw")
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        hosts = {"otel-agent:8889": f"127.0.0.1:{collector.ports['prometheus']}",
                 "otel-agent:8888": f"127.0.0.1:{collector.ports['telemetry']}"}
        proms = []
        for replica in ("a", "b"):
            path = tmp / f"prometheus-{replica}.yml"
            prom = servers.prometheus_server(path, stack.prometheus_flags())
            ha.prometheus_ha_config(tmp, path.stem, {**hosts, "localhost:9090": f"127.0.0.1:{prom.port}"},
                                    remote_write=f"{vm.url}/api/v1/write")
            prom.env = {"PROMETHEUS_REPLICA": replica}
            prom.name = f"prometheus-{replica}"
            cleanup.callback(shutil.rmtree, prom.workdir, ignore_errors=True)
            prom.start(timeout=60)
            cleanup.callback(prom.stop)
            proms.append(prom)

        materials = start_materials(cleanup)
        port = servers.free_port()
        adir = servers.tempdir("app")
        cleanup.callback(shutil.rmtree, adir, ignore_errors=True)
        env = app_env(collector, database_url, f"redis://127.0.0.1:{redis_srv.port}/0", proms[0].url,
                      materials.url)
        app = servers.Server("gunicorn", port, adir, gunicorn_argv(port), adir / "app.log",
                             env={**env, "OTEL_TRACES_SAMPLER_ARG": "1.0"})
        app.ready = lambda: servers.http_ok(f"http://127.0.0.1:{port}/livez")
        app.start(timeout=60)
        cleanup.callback(app.stop)
        yield HAStack(proms, vm, app)


def _wait(predicate: object, what: str) -> float:
    t0 = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if predicate():  # type: ignore[operator]
                return time.monotonic() - t0
        if time.monotonic() - t0 > DEADLINE:
            raise AssertionError(f"timed out after {DEADLINE:g} s waiting for {what}")
        time.sleep(0.5)


def test_both_replicas_write_and_victoriametrics_keeps_one_copy(ha_stack: HAStack) -> None:
    s = ha_stack
    series = 'up{job="otel-collector"}'
    # Both replicas scrape and remote-write (their own counters say so).
    for prom in s.proms:
        _wait(lambda p=prom: float(ha.query(p.url, "sum(prometheus_remote_storage_samples_total)")[0]["value"][1])
              > 100, f"{prom.name} to remote-write")
    _wait(lambda: len(ha.query(s.vm.url, f"count_over_time({series}[{WINDOW}s])")) == 1
          and float(ha.query(s.vm.url, f"count_over_time({series}[{WINDOW}s])")[0]["value"][1]) >= WINDOW - 3,
          f"{WINDOW} s of {series} in VictoriaMetrics")
    now = str(time.time() - 2)
    local = [float(ha.query(p.url, f"count_over_time({series}[{WINDOW}s])", time=now)[0]["value"][1])
             for p in s.proms]
    [stored] = ha.query(s.vm.url, f"count_over_time({series}[{WINDOW}s])", time=now)
    # One series, labelled as in Prometheus (no external label), with one replica's samples, not two.
    assert stored["metric"] == {"job": "otel-collector", "instance": stored["metric"]["instance"]}, \
        stored["metric"]
    assert not ha.query(s.vm.url, 'count({replica!=""} or {monitor!=""})')
    count = float(stored["value"][1])
    print(f"\nsamples in {WINDOW} s: prometheus-a {local[0]:g}, prometheus-b {local[1]:g}, "
          f"VictoriaMetrics {count:g} (dedup 1 s)")
    assert count <= max(local) + 2, (count, local)
    assert count >= min(local) - 3, (count, local)


def test_every_panel_returns_data_from_victoriametrics_as_from_prometheus(ha_stack: HAStack) -> None:
    s = ha_stack
    stats = asyncio.run(run_load(s.app.url, rate=40, duration=8, concurrency=8, seed=7))
    assert stats.sent > 100
    boards = {p.name: _dashboard(p) for p in sorted(DASHBOARDS.glob("*.json"))}
    pending = {(name, title, expr) for name, board in boards.items() for title, expr in _targets(board)}
    checked = len(pending)
    assert pending
    last: dict[tuple[str, str, str], str] = {}
    deadline = time.monotonic() + DEADLINE
    while pending and time.monotonic() < deadline:
        for name in sorted({n for n, _, _ in pending}):
            # template variables take their values from Prometheus, as Grafana's would
            values = _variables(SimpleNamespace(prometheus=s.proms[0]), boards[name])  # type: ignore[arg-type]
            for key in sorted(k for k in pending if k[0] == name):
                expr = last[key] = _expand(key[2], values)
                from_prom = _series(ha.query(s.proms[0].url, expr))
                # Data from both, and the same series (label sets) whichever store answers.
                if from_prom and from_prom == _series(ha.query(s.vm.url, expr)):
                    pending.discard(key)
        time.sleep(1)
    missing = [f"{n} / {t!r}: {last.get((n, t, e))}" for n, t, e in sorted(pending)]
    assert not missing, (f"{len(missing)} of {checked} panel queries differ between Prometheus and "
                         "VictoriaMetrics:\n" + "\n".join(missing))


def _series(results: list[dict]) -> set[frozenset]:
    """The label sets of a query's results, less NaN results: MetricsQL leaves NaN out of its
    output, PromQL keeps it (histogram_quantile over a route with no requests in the window);
    Grafana draws neither."""
    return {frozenset(r["metric"].items()) for r in results if r["value"][1] != "NaN"}
