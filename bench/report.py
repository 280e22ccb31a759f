"""The run's results and the printed table (markdown, pasted as is into docs/performance.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bench.rounds import Series


def print_figures(title: str, rows: list[tuple[str, str]], width: int = 58) -> None:
    """A figure's rows under its title, with the machine's load average (bench/figures.py, bench/where.py)."""
    print(f"\n{title} (load average {os.getloadavg()[0]:.1f})")
    for name, value in rows:
        print(f"  {name:<{width}} {value:>14}")


@dataclass
class Check:
    what: str
    value: str
    target: str
    met: bool | None  # None: informational
    unmeasured: bool = False


@dataclass
class Results:
    profile_line: str = ""
    groups: dict[str, dict[str, Series]] = field(default_factory=dict)  # title -> variant -> series
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, what: str, why: str) -> None:
        self.checks.append(Check(what, f"NOT MEASURED: {why}", "measured", False, unmeasured=True))


def _load() -> str:
    try:
        return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def render(res: Results) -> tuple[str, list[str]]:
    lines = [f"sizewise-otel overhead ({res.profile_line}; {os.cpu_count()} CPUs, {_load()} at the end)", ""]
    for title, series in res.groups.items():
        lines.append(f"| {title} | req/s | ratio to bare (spread) | server CPU us/req | added us/req (spread) "
                     "| p50 ms | p99 ms |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in series.values():
            if not s.runs:
                lines.append(f"| {s.label} | NOT MEASURED: {s.problem or 'no runs'} | | | | | |")
                continue
            flag = f" **INVALID: {s.problem}**" if s.problem else ""
            lines.append(f"| {s.label}{flag} | {s.med('rps'):,.0f} | {s.ratio:.2f} ({s.spread(s.ratios)}) | "
                         f"{s.med('cpu_us'):.0f} | {s.added_us:+.0f} ({s.spread(s.cpu_added, '{:+.0f}')}) | "
                         f"{s.med('p50_ms'):.2f} | {s.med('p99_ms'):.2f} |")
        lines.append("")
    lines += ["| measure | value | target | met |", "|---|---:|---:|:---:|"]
    missed: list[str] = []
    for c in res.checks:
        mark = "-" if c.met is None else ("yes" if c.met else "**NO**")
        if c.met is False:
            missed.append(c.what)
        lines.append(f"| {c.what} | {c.value} | {c.target} | {mark} |")
    lines += [f"\nnote: {n}" for n in res.notes]
    return "\n".join(lines), missed
