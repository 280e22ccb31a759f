"""Collector down (issue 9): the app keeps serving without waiting on exports, failed exports are
counted, and when the collector returns the counts resume with nothing lost (cumulative temporality:
the next export carries every request served during the outage).

The latency figure itself (down vs normal median, target <= 1.10x + 1 ms) is measured by
``bench/collector_down.py``: a tight ratio is a benchmark on a shared 2-core machine, not a test.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from sizewise_otel.demo import hvac
from tests import servers
from tests.integration.test_stack_e2e import ROUTE, Stack, running_stack

pytestmark = pytest.mark.integration

# An export on the request path could hold a request for up to the OTLP exporters' timeout
# (OTEL_EXPORTER_OTLP_TIMEOUT, unset by compose: 10 s). Bounds stay far from both that and from
# what a busy machine does to a few-millisecond request.
EXPORT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack_(postgres: servers.Server, redis_srv: servers.Server) -> Iterator[Stack]:
    # compose's app settings as they are (10 % of requests traced, 1 s metric export for speed).
    with running_stack(postgres, redis_srv, "stack_collector_down") as s:
        yield s


def _requests(base: str, n: int, seed: int) -> list[float]:
    """Latencies of ``n`` calculation requests (one keep-alive connection), each answered 2xx."""
    rng = random.Random(seed)
    out = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(n):
            body = hvac.sample_request(rng)
            t0 = time.perf_counter()
            resp = client.post(ROUTE, json=body)
            out.append(time.perf_counter() - t0)
            assert resp.status_code in (200, 201), resp.text
    return out


def _stable_total(s: Stack, promql: str) -> float:
    """The total once two reads 3 s apart agree (every export has landed)."""
    last = None
    for _ in range(20):
        value = s.scalar(promql)
        if value is not None and value == last:
            return value
        last = value
        time.sleep(3)
    raise AssertionError(f"{promql} never settled (last {last})")


def _failures(s: Stack) -> float:
    text = httpx.get(f"{s.app.url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sizewise_telemetry_export_failures_total"))


def test_collector_down_costs_no_latency_and_loses_no_counts(stack_: Stack) -> None:
    s = stack_
    promql = f'sum(http_server_request_duration_seconds_count{{http_route="{ROUTE}"}})'
    _requests(s.app.url, 50, seed=1)  # warm up: caches, pools, code paths
    servers.wait_for(lambda: s.scalar(promql) == 50, 30, "warm-up counted")
    normal = statistics.median(_requests(s.app.url, 300, seed=2))

    s.collector.server.stop()
    try:
        # Failed exports are counted (each worker's own registry: read whichever answers, retry);
        # once one is, the outage is in effect for the requests below.
        servers.wait_for(lambda: _failures(s) > 0, 40, "export failures counted")
        latencies = _requests(s.app.url, 300, seed=3)  # every one answered 2xx
        down = statistics.median(latencies)
        print(f"median latency: {normal * 1e3:.2f} ms normal, {down * 1e3:.2f} ms collector down, "
              f"slowest {max(latencies) * 1e3:.0f} ms")
        # No request waited for an export: none came near the exporter's timeout, and the typical
        # request is not a multiple of normal (a margin no neighbour's load reaches; the 10 %
        # target is bench/collector_down.py's).
        assert max(latencies) < EXPORT_TIMEOUT / 2, f"a request took {max(latencies):.2f}s"
        assert down <= 3 * normal + 0.05, f"median {down * 1e3:.2f} ms down vs {normal * 1e3:.2f} ms"
    finally:
        s.collector.server.start()

    # Back: the cumulative counters carry every request served during the outage.
    expected = 50 + 300 + 300
    try:
        servers.wait_for(lambda: s.scalar(promql) == expected, 60, f"{promql} == {expected}")
    except TimeoutError:
        pytest.fail(f"after the collector returned Prometheus reports {s.scalar(promql)}, expected {expected}")
    assert _stable_total(s, promql) == expected
