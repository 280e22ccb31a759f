"""What a validation check produces, and how the results become one score.

A check ends in one of four statuses. ``pass`` scores 1, ``warn`` 0.5 and ``fail`` 0, each times
the check's weight; ``skip`` (the check needs something not given, e.g. ``--prometheus``) is left
out of the score altogether. The score is ``100 * sum(weight * value) / sum(weight)`` over the
checks that ran, rounded to one decimal.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


VALUES: dict[Status, float] = {Status.PASS: 1.0, Status.WARN: 0.5, Status.FAIL: 0.0}


@dataclass
class Verdict:
    """What a check function returns; the runner adds category, name, duration and weight."""

    status: Status
    reason: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # set when one check function yields several results
    weight: float | None = None


def ok(reason: str, **details: Any) -> Verdict:
    return Verdict(Status.PASS, reason, details=details)


def warn(reason: str, fix: str, **details: Any) -> Verdict:
    return Verdict(Status.WARN, reason, fix, details=details)


def fail(reason: str, fix: str, **details: Any) -> Verdict:
    return Verdict(Status.FAIL, reason, fix, details=details)


def skip(reason: str, fix: str = "", **details: Any) -> Verdict:
    return Verdict(Status.SKIP, reason, fix, details=details)


@dataclass
class CheckResult:
    category: str
    name: str
    status: Status
    reason: str
    fix: str = ""
    duration: float = 0.0
    weight: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.status is not Status.SKIP

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        out["duration_seconds"] = round(out.pop("duration"), 4)
        return out


def score(results: Iterable[CheckResult]) -> float:
    """Weighted score in percent over the checks that ran (skips excluded); 0 when none ran."""
    total = earned = 0.0
    for r in results:
        if not r.scored:
            continue
        total += r.weight
        earned += r.weight * VALUES[r.status]
    return round(100.0 * earned / total, 1) if total else 0.0


def counts(results: Iterable[CheckResult]) -> dict[str, int]:
    found = Counter(r.status for r in results)
    return {s.value: found.get(s, 0) for s in Status}
