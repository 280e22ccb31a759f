"""Request latency with the collector down vs up: ``python bench/collector_down.py``.

tests/integration/test_stack_collector_down.py proves that no request waits for an export and
that nothing is lost; the figure behind issue 9's "the app does not slow down" is measured here, on
the same stack (the demo under gunicorn as the Dockerfile runs it, the built collector, Prometheus,
PostgreSQL, Redis; all on loopback). Rounds alternate collector up and down, so a neighbour's load
lands on both sides; the medians over all rounds are compared with the target
``down <= 1.10 x normal + 1 ms``; the exit status is non-zero when it is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.integration.test_stack_collector_down import _failures, _requests  # noqa: E402
from tests.integration.test_stack_e2e import running_stack  # noqa: E402

RATIO, SLACK = 1.10, 0.001


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="per round and side")
    args = parser.parse_args()
    normal: list[float] = []
    down: list[float] = []
    with servers.postgres_server() as pg, servers.redis_server() as rd, \
            running_stack(pg, rd, "bench_collector_down") as s:
        _requests(s.app.url, 50, seed=1)  # warm up: caches, pools, code paths
        for r in range(args.rounds):
            normal += _requests(s.app.url, args.requests, seed=10 + r)
            failed = _failures(s)
            s.collector.server.stop()
            try:
                servers.wait_for(lambda f=failed: _failures(s) > f, 60, "a failed export")  # the outage is on
                down += _requests(s.app.url, args.requests, seed=100 + r)
            finally:
                s.collector.server.start()
            round_n, round_d = (statistics.median(x[-args.requests:]) for x in (normal, down))
            print(f"round {r + 1}: median {round_n * 1e3:.2f} ms up, {round_d * 1e3:.2f} ms down")
    n, d = statistics.median(normal), statistics.median(down)
    ok = d <= n * RATIO + SLACK
    print(f"median over {len(normal)} requests a side: {n * 1e3:.2f} ms collector up, {d * 1e3:.2f} ms down "
          f"(ratio {d / n:.3f}; target <= {RATIO:g}x + {SLACK * 1e3:g} ms){'' if ok else '  MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
