"""Start-up and probe latency with dependencies that never answer: ``python bench/startup.py``.

The integration tests (tests/integration/test_health_startup.py, test_health_faults.py) prove the
properties with margins no loaded machine reaches: start-up does not wait for a dependency, /livez
answers while every dependency hangs, /health answers within the check timeout. The tight figures
live here, measured and printed; the exit status is non-zero when one misses its target:

- live: uvicorn thread started -> first ``/livez`` 200, under 2 s (Redis and PostgreSQL hung);
- ``/livez`` p50 under 0.1 s, with the dependency checks stuck in the background;
- the first ``/health``: within the check timeout plus 0.4 s.

Each round is a fresh app against fresh hung servers (accept, never answer); the medians of the
rounds are reported. Run it on a quiet machine: it measures that machine too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_health_faults import HungServer  # noqa: E402
from tests.integration.test_health_startup import build_app, serve, timed  # noqa: E402

TIMEOUT = 1.0  # the health check timeout of the measured app
TARGETS = {"live_s": 2.0, "livez_p50_s": 0.1, "health_s": TIMEOUT + 0.4}


def one_round(livez_requests: int) -> dict[str, float]:
    hung = HungServer()
    # No client-side timeouts: only the health runner's bound stands between /health and a hang.
    client = redis.Redis(host="127.0.0.1", port=hung.port)
    engine = sa.create_engine(f"postgresql+psycopg://u@127.0.0.1:{hung.port}/db")
    try:
        with serve(build_app(engine=engine, redis_client=client, timeout=TIMEOUT)) as (base, started):
            health = timed(f"{base}/health")[1]
            livez = [timed(f"{base}/livez")[1] for _ in range(livez_requests)]
            return {"live_s": started, "livez_p50_s": statistics.median(livez), "livez_max_s": max(livez),
                    "health_s": health}
    finally:
        hung.close()  # cuts the stuck connections, so the checks' threads end
        engine.dispose()
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--livez-requests", type=int, default=50)
    args = parser.parse_args()
    rounds = [one_round(args.livez_requests) for _ in range(args.rounds)]
    missed = 0
    print(f"{'figure':<14} {'median':>9} {'worst':>9} {'target':>9}")
    for key in ("live_s", "livez_p50_s", "livez_max_s", "health_s"):
        values = [r[key] for r in rounds]
        target = TARGETS.get(key)
        median = statistics.median(values)
        ok = target is None or median < target
        missed += not ok
        print(f"{key:<14} {median:>9.4f} {max(values):>9.4f} "
              f"{'' if target is None else f'< {target:g}':>9}{'' if ok else '  MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
