"""Failure drill with the real binaries: the long-term store is down for a minute.

A Prometheus replica (copy of prometheus/prometheus-ha.yml) scrapes a target every second and
remote-writes to VictoriaMetrics (compose's flags). VictoriaMetrics is stopped for 60 s and started
again on the same data: Prometheus keeps the unsent samples in its WAL and retries, so once the
store is back it holds the outage's samples as densely as Prometheus itself: no gap.
(The other drills: a Prometheus replica and an Alertmanager peer down, in test_ha_alerting.py.)
"""

from __future__ import annotations

import itertools
import shutil
import time

import pytest

from tests import ha, servers

pytestmark = pytest.mark.integration

OUTAGE = 60.0
DEADLINE = 120.0
SERIES = 'up{job="otel-collector"}'


def stamps(url: str, start: float, end: float) -> list[float]:
    """Timestamps of the raw samples of SERIES in [start, end]."""
    result = ha.query(url, f"{SERIES}[{int(end - start)}s]", time=f"{end:.3f}")
    return [float(t) for t, _ in result[0]["values"]] if result else []


def widest_gap(ts: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(ts)), default=float("inf"))


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
        local = stamps(prom.url, *window)
        assert len(local) >= OUTAGE and widest_gap(local) < 3, local  # Prometheus scraped all along
        # No gap: the store's samples are as dense as Prometheus's over the outage (its dedup may
        # merge two scrapes that jitter into one 1 s interval, so counts may differ by a few).
        t0 = time.monotonic()
        while widest_gap(stored := stamps(vm.url, *window)) >= 3 or len(stored) < 0.9 * len(local):
            assert time.monotonic() - t0 < DEADLINE, (
                f"VictoriaMetrics holds {len(stored)} of {len(local)} samples of the outage window, "
                f"widest gap {widest_gap(stored):.1f} s")
            time.sleep(1)
        print(f"\noutage {up - down:.0f} s: Prometheus {len(local)} samples in the window, VictoriaMetrics "
              f"{len(stored)} (widest gap {widest_gap(stored):.1f} s), backfilled "
              f"{time.monotonic() - t0:.1f} s after the check began")
    finally:
        for srv in (prom, vm):
            srv.stop()
            shutil.rmtree(srv.workdir, ignore_errors=True)
        exporter.stop()
        shutil.rmtree(tmp, ignore_errors=True)
