"""Output: a progress line per check while running (stderr), then the table or the JSON (stdout)."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any, TextIO

from sizewise_otel.validate.model import CheckResult, Status, counts, score

JSON_VERSION = 1
LABEL = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


class Progress:
    """``[ 3/38] components  /readyz is public ... pass (12 ms)`` as each check finishes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, result: CheckResult, index: int, total: int) -> None:
        width = len(str(total))
        self.stream.write(f"[{index:>{width}}/{total}] {result.category:<11} {result.name} ... "
                          f"{result.status.value} ({result.duration * 1000:.0f} ms)\n")
        self.stream.flush()


def table(results: Sequence[CheckResult], *, url: str, min_score: float, width: int | None = None) -> str:
    width = width or max(100, min(shutil.get_terminal_size((140, 20)).columns, 160))
    name_w = min(max(len(r.name) for r in results), 52) if results else 10
    head = f"{'CATEGORY':<11}  {'CHECK':<{name_w}}  {'STATUS':<6}  REASON"
    lines = [f"sizewise-otel validate {url}", "", head, "-" * min(width, len(head) + 60)]
    indent = " " * (11 + 2 + name_w + 2 + 6 + 2)
    for r in results:
        name = r.name if len(r.name) <= name_w else r.name[: name_w - 1] + "…"
        reason = textwrap.wrap(r.reason, max(30, width - len(indent))) or [""]
        lines.append(f"{r.category:<11}  {name:<{name_w}}  {LABEL[r.status]:<6}  {reason[0]}")
        lines += [indent + more for more in reason[1:]]
        if r.fix and r.status in (Status.FAIL, Status.WARN):
            for i, part in enumerate(textwrap.wrap("fix: " + r.fix, max(30, width - len(indent)))):
                lines.append(indent + ("" if i == 0 else "     ") + part)
    lines.append("")
    lines.append(summary_line(results, min_score))
    return "\n".join(lines) + "\n"


def summary_line(results: Sequence[CheckResult], min_score: float) -> str:
    value, c = score(results), counts(results)
    verdict = "OK" if value >= min_score else "BELOW MINIMUM"
    return (f"score {value:.1f} / 100 (minimum {min_score:g}: {verdict}) - "
            f"{c['pass']} pass, {c['warn']} warn, {c['fail']} fail, {c['skip']} skipped")


def as_json(results: Sequence[CheckResult], *, url: str, prometheus: str | None, alertmanager: str | None,
            min_score: float, started_at: str, duration: float, local_source: str | None) -> dict[str, Any]:
    value = score(results)
    return {
        "version": JSON_VERSION,
        "url": url,
        "prometheus": prometheus,
        "alertmanager": alertmanager,
        "started_at": started_at,
        "duration_seconds": round(duration, 3),
        "local_settings_source": local_source,
        "score": value,
        "min_score": min_score,
        "passed": value >= min_score,
        "counts": counts(results),
        "checks": [r.to_dict() for r in results],
    }


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str) + "\n"
