"""Failure drill with the real binaries: the long-term store is down for a minute.

A Prometheus replica (copy of prometheus/prometheus-ha.yml) scrapes a target every second and
remote-writes to VictoriaMetrics (compose's flags). VictoriaMetrics is stopped for 60 s and started
again on the same data: Prometheus keeps the unsent samples in its WAL and retries, so once the
store is back it holds every sample of the outage, as many as Prometheus itself: no gap.
(The other drills: a Prometheus replica and an Alertmanager peer down, in test_ha_alerting.py.)
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests import ha, servers

pytestmark = pytest.mark.integration

OUTAGE = 60.0
DEADLINE = 120.0
SERIES = 'up{job="otel-collector"}'


def count(url: str, start: float, end: float) -> float:
    result = ha.query(url, f"count_over_time({SERIES}[{int(end - start)}s])", time=f"{end:.3f}")
    return float(result[0]["value"][1]) if result else 0.0


def test_remote_store_down_for_a_minute_leaves_no_gap() -> None:
    tmp = servers.tempdir("ha-drill")
    exporter = ha.FakeExporter({'sizewise_drill{job="x"}': 1})
    vm = ha.victoriametrics_server()
    path = tmp / "prometheus-a.yml"
    prom = servers.prometheus_server(path)
    ha.prometheus_ha_config(tmp, path.stem, {"otel-agent:8889": f"127.0.0.1:{exporter.port}",
                                            "localhost:9090": f"127.0.0.1:{prom.port}"},
                            remote_write=f"{vm.url}/api/v1/write")
    prom.env = {"PROMETHEUS_REPLICA": "a"}
    try:
        vm.start(timeout=60)
        prom.start(timeout=60)
        servers.wait_for(lambda: ha.query(vm.url, SERIES), DEADLINE, "the first samples in VictoriaMetrics")
        down = time.time()
        vm.stop()
        time.sleep(OUTAGE)
        vm.start(timeout=60)
        up = time.time()
        window = (down - 5, up + 5)
        time.sleep(7)  # past the window's end, and a scrape or two more
        local = count(prom.url, *window)
        assert local >= OUTAGE, local  # Prometheus itself scraped all along
        t0 = time.monotonic()
        while count(vm.url, *window) < local - 2:
            assert time.monotonic() - t0 < DEADLINE, (
                f"VictoriaMetrics holds {count(vm.url, *window):g} of {local:g} samples of the outage window")
            time.sleep(1)
        stored = count(vm.url, *window)
        print(f"\noutage {up - down:.0f} s: Prometheus {local:g} samples in the window, VictoriaMetrics "
              f"{stored:g}, backfilled {time.monotonic() - t0:.1f} s after the check began")
        assert stored <= local + 2
    finally:
        for srv in (prom, vm):
            srv.stop()
            shutil.rmtree(srv.workdir, ignore_errors=True)
        exporter.stop()
        shutil.rmtree(tmp, ignore_errors=True)
