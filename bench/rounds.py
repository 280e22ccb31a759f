"""Interleaved rounds: every variant of a group loaded in turn, ratios taken within a round.

The machine is shared and noisy, so what the table reports are ratios to the ``bare`` variant
measured in the same round (each round rotates the order), reduced with medians, with the spread
over rounds beside them.
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
    names = list(servers)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        got = {v: measured(servers[v], servers[v].url + path, seconds, script) for v in order}
        for v in names:
            s = out[v]
            s.runs.append(got[v])
            s.ratios.append(got[v].rps / got["bare"].rps)
            s.cpu_ratios.append(got["bare"].cpu_us / got[v].cpu_us)
            s.cpu_added.append(got[v].cpu_us - got["bare"].cpu_us)
            bad = got[v].non_2xx + got[v].errors
            if bad and not s.problem:
                s.problem = f"{got[v].non_2xx} non-2xx answers, {got[v].errors} socket errors in a round"
    return out
