"""The speed kept through the SDK seam (issue 16): this tree's ``instrument()`` against a baseline
commit's, in the same interleaved rounds on the same machine.

    python bench/seam_compare.py [--baseline ba4f540] [--rounds 6] [--seconds 8]

The baseline commit is checked out once into ``build/bench-baseline/<rev>`` (a git worktree, never
committed) and its own ``bench.apps`` serves its ``bare`` and ``sizewise`` variants, so each tree is
measured with the code it shipped. Four uvicorn servers (bare and sizewise of each tree) take turns
under wrk; each tree's ratio is its sizewise req/s over its own bare's in the same round. The run
prints both medians, the spread, the difference, and this tree's public path (``SIZEWISE_FASTPATH=0``)
beside them, and exits 1 when this tree's ratio is more than ``--tolerance`` (0.02) below the
baseline's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.apps import TRIVIAL_PATH  # noqa: E402
from bench.parts import _app_env, started  # noqa: E402
from bench.proc import Server, free_port  # noqa: E402
from bench.rounds import interleave  # noqa: E402

SEAM_BASELINE = "ba4f540"  # the last commit before the fast path moved behind sizewise_otel/fastpath/


def baseline_tree(rev: str) -> Path:
    """A worktree of ``rev`` under build/ (kept between runs: it is keyed by the resolved commit)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = ROOT / "build" / "bench-baseline" / sha[:12]
    if not (tree / "bench" / "apps.py").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), sha], cwd=ROOT, check=True,
                       capture_output=True, text=True)
    return tree


def server(name: str, variant: str, wd: Path, pythonpath: Path, extra: dict[str, str] | None = None) -> Server:
    env = _app_env(wd, name, {"PYTHONPATH": str(pythonpath), **(extra or {})})
    return Server(name, [sys.executable, "-m", "bench.apps", variant, "{port}"], env, wd / name, TRIVIAL_PATH,
                  free_port())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=SEAM_BASELINE)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)
    old = baseline_tree(args.baseline)
    with tempfile.TemporaryDirectory(prefix="sizewise-seam-") as tmp:
        wd = Path(tmp)
        servers = {
            "bare": server("bare", "bare", wd, ROOT),
            "sizewise": server("sizewise", "sizewise", wd, ROOT),
            "public": server("public", "sizewise", wd, ROOT, {"SIZEWISE_FASTPATH": "0"}),
            "old_bare": server("old_bare", "bare", wd, old),
            "old_sizewise": server("old_sizewise", "sizewise", wd, old),
        }
        labels = {"bare": "bare FastAPI (this tree)", "sizewise": "instrument(app), this tree",
                  "public": "instrument(app), this tree, SIZEWISE_FASTPATH=0",
                  "old_bare": f"bare FastAPI ({args.baseline})", "old_sizewise": f"instrument(app), {args.baseline}"}
        with started(servers):
            got = interleave(servers, labels, TRIVIAL_PATH, rounds=args.rounds, seconds=args.seconds, warmup=3.0)
    # Each tree against its own bare in the same round (the old tree's bare runs the old bench app).
    new = got["sizewise"].ratios
    base = [s / b for s, b in zip((r.rps for r in got["old_sizewise"].runs), (r.rps for r in got["old_bare"].runs),
                                  strict=True)]
    public = got["public"].ratios
    med = sorted(new)[len(new) // 2], sorted(base)[len(base) // 2], sorted(public)[len(public) // 2]
    print(f"trivial route, {args.rounds} interleaved rounds of {args.seconds:g} s, ratio to the same tree's bare:")
    print(f"  {labels['old_sizewise']:<50} {med[1]:.3f}  ({min(base):.2f}-{max(base):.2f})")
    print(f"  {labels['sizewise']:<50} {med[0]:.3f}  ({min(new):.2f}-{max(new):.2f})")
    print(f"  {labels['public']:<50} {med[2]:.3f}  ({min(public):.2f}-{max(public):.2f})")
    print(f"  server CPU us/req added over bare: this tree {got['sizewise'].added_us:+.0f}, "
          f"public path {got['public'].added_us:+.0f}, "
          f"{args.baseline} {got['old_sizewise'].med('cpu_us') - got['old_bare'].med('cpu_us'):+.0f}")
    diff = med[0] - med[1]
    verdict = "within" if diff >= -args.tolerance else "BELOW"
    print(f"difference {diff:+.3f}: {verdict} {args.tolerance} of {args.baseline}")
    problems = [f"{s.label}: {s.problem}" for s in got.values() if s.problem]
    for p in problems:
        print("invalid row:", p)
    return 0 if diff >= -args.tolerance and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
