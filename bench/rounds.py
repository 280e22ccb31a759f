"""Interleaved rounds: every variant of a group loaded in turn, ratios taken within a round.

The machine is shared and noisy, so what the table reports are ratios to the ``bare`` variant
measured right beside each run: a round is ``bare, v1, bare, v2, ..., bare`` (the variants' order
rotates from round to round, and a round's last bare run opens the next round) and each variant is
compared with the mean of the bare runs just before and just after it. The ratios are reduced
with medians, with the spread over rounds beside them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import Server, WrkResult, measured, wrk


@dataclass
class Series:
    """One variant's runs in one group, against that group's bare runs."""

    label: str
    runs: list[WrkResult] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)      # req/s over bare's, per round
    cpu_ratios: list[float] = field(default_factory=list)  # bare's CPU per request over this one's
    cpu_added: list[float] = field(default_factory=list)   # us of server CPU per request over bare's
    problem: str = ""  # non-empty: the row is not a valid measurement, and says why

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.problem

    def med(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs) if self.runs else float("nan")

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.cpu_ratios) if self.cpu_ratios else float("nan")

    @property
    def added_us(self) -> float:
        return statistics.median(self.cpu_added) if self.cpu_added else float("nan")

    def spread(self, values: list[float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(min(values))}-{fmt.format(max(values))}" if values else "-"


def interleave(servers: dict[str, Server], labels: dict[str, str], path: str, *, rounds: int,
               seconds: float, warmup: float, script: Path | None = None) -> dict[str, Series]:
    """``servers`` must hold ``bare``; every run with a socket error or non-2xx answer is flagged."""
    out = {v: Series(labels[v]) for v in servers}
    for srv in servers.values():  # warm up: imports, first-request paths, series creation
        wrk(srv.url + path, warmup, script=script)
    others = [v for v in servers if v != "bare"]
    carried: WrkResult | None = None
    for r in range(rounds):
        # bare, v1, bare, v2, ..., bare: each variant is compared with the bare runs right before and
        # after it (their mean), so a slow spell of the shared machine that spans a few runs lands on
        # both sides of the comparison; the variants' order rotates from round to round.
        k = r % max(len(others), 1)
        order = others[k:] + others[:k]
        # A round's last bare run is the next round's first: every variant run still sits between
        # two bare runs, and a two-variant group gets a third more rounds in the same time.
        bare_runs = [carried if carried is not None else
                     measured(servers["bare"], servers["bare"].url + path, seconds, script)]
        got = {}
        for v in order:
            got[v] = measured(servers[v], servers[v].url + path, seconds, script)
            bare_runs.append(measured(servers["bare"], servers["bare"].url + path, seconds, script))
        carried = bare_runs[-1]
        bare = out["bare"]  # its row: the middle bare run of the round, every ratio 1 by definition
        bare.runs.append(bare_runs[len(bare_runs) // 2])
        bare.ratios.append(1.0)
        bare.cpu_ratios.append(1.0)
        bare.cpu_added.append(0.0)
        for i, v in enumerate(order):
            before, after = bare_runs[i], bare_runs[i + 1]
            run = got[v]
            rps = (before.rps + after.rps) / 2
            cpu = (before.cpu_us + after.cpu_us) / 2
            s = out[v]
            s.runs.append(run)
            s.ratios.append(run.rps / rps)
            s.cpu_ratios.append(cpu / run.cpu_us)
            s.cpu_added.append(run.cpu_us - cpu)
        for v, run in [*(("bare", b) for b in bare_runs), *got.items()]:
            bad = run.non_2xx + run.errors
            if bad and not out[v].problem:
                out[v].problem = f"{run.non_2xx} non-2xx answers, {run.errors} socket errors in a round"
    return out
