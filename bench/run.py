"""The overhead table against the tools users would pick instead, in one command.

``python bench/run.py`` (full, about 20 minutes) or ``--quick`` (CI smoke). Every figure is a
ratio to a bare baseline measured in the same interleaved rounds (medians, spread beside them),
with the server's CPU time per request (all its processes and threads, from /proc) next to wrk's
throughput, the steadier view on a shared machine.

1. ``http``: the trivial route (``GET /ping``) under uvicorn for every anchor in ``bench.apps``.
2. ``demo``: the demo's ``POST /api/hvac/calculate`` (one cache get and set, one INSERT) on real
   PostgreSQL and Redis, instrumented vs the same demo without telemetry.
3. ``gunicorn``: 1 and 2 again with 2 gunicorn workers, the instrumented side pushing OTLP to the
   built collector (full run only).
4. ``errors``: ``capture_error`` on the request path, timed inside the server while ``GET /boom``
   raises through the instrumented app.
5. ``metrics``: the ``/metrics`` body with 1,000 and 10,000 extra series.
6. ``rss``: RSS growth of the instrumented server over requests with random paths, Host headers
   and methods.
7. ``ops``: SQLAlchemy ``SELECT 1`` and Redis ``GET`` per operation, instrumented vs bare.

Exit status: non-zero when a target is missed or a row could not be measured (a missing server,
collector, or the public path: such a row is printed as NOT MEASURED, never dropped). ``--quick``
fails on unmeasured rows and when ``instrument(app)`` falls below 0.75 of bare on either view.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The trace sink of the gunicorn rows is an in-process gRPC server: without this, gRPC logs a line
# at INFO each time the harness forks wrk ("skipping fork() handlers").
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apps, demo_apps, parts  # noqa: E402
from bench.proc import free_port, harness_beside_loadgen, parse_wrk, wait_http  # noqa: E402,F401 - soak.py's old imports
from bench.report import Check, Results, render  # noqa: E402

QUICK_FLOOR = 0.75
COMPETITORS = ("contrib", "contrib_tuned", "native", "pfi", "starlette_exporter")
TARGETS = {
    "trivial_ratio": 0.90,      # instrument(app) req/s over bare, trivial route
    "trivial_added_us": 40.0,   # server CPU per request added to bare's
    "demo_ratio": 0.95,         # demo POST /api/hvac/calculate, instrumented over uninstrumented
    "metrics_10k_ms": 50.0,     # /metrics body with 10k series
    "capture_p50_us": 20.0,     # capture_error on the request path
    "capture_p99_us": 100.0,
    "rss_growth_mb": 20.0,      # after 100k random requests
    "op_overhead": 0.15,        # SQL and Redis per operation
}


@dataclasses.dataclass(frozen=True)
class Profile:
    quick: bool
    rounds: int
    seconds: float
    warmup: float
    random_requests: int
    op_batches: int
    op_batch_size: int
    boom_requests: int


FULL = Profile(False, rounds=11, seconds=4.0, warmup=3.0, random_requests=100_000, op_batches=25,
               op_batch_size=500, boom_requests=3000)
QUICK = Profile(True, rounds=3, seconds=2.0, warmup=1.5, random_requests=20_000, op_batches=11,
                op_batch_size=300, boom_requests=600)
ALL_PARTS = ("http", "demo", "gunicorn", "errors", "metrics", "rss", "ops")


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sizewise-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def judge(res: Results, profile: Profile) -> None:
    """Turn the measured series into target checks (an unmeasured input is a failed check)."""
    trivial = res.groups.get("trivial route, uvicorn")
    if trivial is not None:
        me = trivial.get("sizewise")
        if me is None or not me.ok:
            res.fail("trivial route: instrument(app)", me.problem if me else "not measured")
        else:
            res.checks.append(Check("trivial route: instrument(app) req/s over bare (spread)",
                                    f"{me.ratio:.2f} ({me.spread(me.ratios)})", f">= {TARGETS['trivial_ratio']}",
                                    me.ratio >= TARGETS["trivial_ratio"]))
            res.checks.append(Check("trivial route: server CPU added per request (spread)",
                                    f"{me.added_us:.0f} us ({me.spread(me.cpu_added, '{:.0f}')})",
                                    f"<= {TARGETS['trivial_added_us']:.0f} us",
                                    me.added_us <= TARGETS["trivial_added_us"]))
            for v in COMPETITORS:
                other = trivial.get(v)
                if other is None:
                    continue
                if not other.ok:
                    res.fail(f"anchor {v}", other.problem or "not measured")
                    continue
                ahead = me.ratio > other.ratio and me.added_us < other.added_us
                res.checks.append(Check(f"ahead of {v}: ratio; added CPU", f"{me.ratio:.2f} vs {other.ratio:.2f}; "
                                        f"{me.added_us:.0f} vs {other.added_us:.0f} us", "higher; lower", ahead))
        for v in ("public", "native", "layer"):
            s = trivial.get(v)
            if s is not None and not s.ok:
                res.fail(f"trivial route: {v}", s.problem or "not measured")
    for group, key in (("demo POST /api/hvac/calculate, uvicorn", "demo_ratio"),
                       ("trivial route, gunicorn -w 2 + collector", "trivial_ratio"),
                       ("demo POST /api/hvac/calculate, gunicorn -w 2 + collector", "demo_ratio")):
        series = res.groups.get(group)
        if series is None:
            continue
        me = series.get("sizewise")
        if me is None or not me.ok:
            res.fail(group, me.problem if me else "not measured")
            continue
        res.checks.append(Check(f"{group}: req/s over bare (spread); CPU added",
                                f"{me.ratio:.2f} ({me.spread(me.ratios)}); {me.added_us:.0f} us",
                                f">= {TARGETS[key]}", me.ratio >= TARGETS[key]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per case (CI smoke)")
    parser.add_argument("--only", choices=ALL_PARTS, action="append", help="run only these parts (repeatable)")
    parser.add_argument("--variants", default=",".join(v for v in apps.VARIANTS if v != "layer"),
                        help="trivial-route variants (comma-separated; bare is always included)")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    parser.add_argument("--seconds", type=float, help="override the seconds per wrk run")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.rounds:
        profile = dataclasses.replace(profile, rounds=args.rounds)
    if args.seconds:
        profile = dataclasses.replace(profile, seconds=args.seconds)
    chosen = list(args.only or [p for p in ALL_PARTS if not (profile.quick and p == "gunicorn")])
    variants = ["bare"] + [v for v in args.variants.split(",") if v and v != "bare"]
    res = Results(profile_line=(f"{'quick' if profile.quick else 'full'}: wrk -t1 -c16, {profile.rounds} "
                                f"interleaved rounds x {profile.seconds:g} s per variant, medians"))
    if profile.quick and "gunicorn" not in chosen:
        res.notes.append("gunicorn + collector rows are not run by --quick (full run only)")
    harness_beside_loadgen()
    with workdir() as wd:
        for part in chosen:
            try:
                getattr(parts, part)(profile, res, wd, TARGETS, variants=variants, labels=apps.LABELS,
                                     demo_labels=demo_apps.LABELS)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # also pytest's Skipped, raised by tests/servers.py;
                # a part that cannot run is a failed row, never a dropped one
                res.fail(f"part {part}", f"{type(exc).__name__}: {str(exc)[:300]}")
    judge(res, profile)
    table, missed = render(res)
    print(table)
    if profile.quick:
        me = res.groups.get("trivial route, uvicorn", {}).get("sizewise")
        floor_missed = me is not None and me.ok and min(me.ratio, me.cpu_ratio) < QUICK_FLOOR
        unmeasured = [c.what for c in res.checks if c.unmeasured]
        if floor_missed:
            print(f"\nFAIL: instrument(app) at {me.ratio:.2f} (req/s) / {me.cpu_ratio:.2f} (CPU) of bare, "  # type: ignore[union-attr]
                  f"below {QUICK_FLOOR}")
        if unmeasured:
            print(f"\nFAIL: not measured: {', '.join(unmeasured)}")
        return 1 if floor_missed or unmeasured else 0
    if missed:
        print(f"\nmissed or not measured: {', '.join(missed)}")
        return 1
    print("\nevery target met, every row measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
