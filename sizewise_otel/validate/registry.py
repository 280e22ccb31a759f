"""The list of checks, in run order, and the loop that runs them one by one.

A check is a function ``(Context) -> Verdict | list[Verdict]`` registered with ``@check``. The runner
times it, turns an exception into a ``fail`` naming what went wrong, and reports each result as soon
as it is known (the progress lines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from sizewise_otel.validate.context import Context, Unreachable
from sizewise_otel.validate.model import CheckResult, Verdict, fail

CheckFn = Callable[[Context], "Verdict | list[Verdict]"]

# Run order (also the table's order). Error tracking runs before metrics so that the synthetic
# error's counters exist when the catalog series are checked.
CATEGORIES = ("components", "errors", "health", "dashboards", "metrics", "alerting", "readiness",
              "performance")


@dataclass(frozen=True)
class CheckDef:
    category: str
    name: str
    fn: CheckFn
    weight: float = 1.0


CHECKS: list[CheckDef] = []


def check(category: str, name: str, weight: float = 1.0) -> Callable[[CheckFn], CheckFn]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")

    def register(fn: CheckFn) -> CheckFn:
        CHECKS.append(CheckDef(category, name, fn, weight))
        return fn

    return register


def all_checks() -> list[CheckDef]:
    """The registered checks by category (``sizewise_otel.validate`` imports the check modules)."""
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(CHECKS, key=lambda d: order[d.category])  # stable: registration order within


def _on_error(ctx: Context, exc: Exception) -> Verdict:
    if isinstance(exc, Unreachable):
        return fail(str(exc), f"start the service or pass the right --url (now {ctx.url})")
    if isinstance(exc, httpx.HTTPError):
        where = getattr(getattr(exc, "request", None), "url", None) if _has_request(exc) else None
        return fail(f"request failed: {type(exc).__name__} {exc}".strip() + (f" ({where})" if where else ""),
                    "check that the server answers at that address within 5 s")
    return fail(f"validator error: {type(exc).__name__}: {exc}",
                "this is a bug in the validator; please report it with the --json output")


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018
        return True
    except RuntimeError:
        return False


def run_checks(ctx: Context, checks: list[CheckDef] | None = None,
               on_start: Callable[[CheckDef, int, int], None] | None = None,
               on_result: Callable[[CheckResult, int, int], None] | None = None) -> list[CheckResult]:
    checks = all_checks() if checks is None else checks
    results: list[CheckResult] = []
    for i, d in enumerate(checks, 1):
        if on_start:
            on_start(d, i, len(checks))
        t0 = time.perf_counter()
        try:
            out = d.fn(ctx)
        except Exception as exc:  # a check never stops the run
            out = _on_error(ctx, exc)
        elapsed = time.perf_counter() - t0
        verdicts = out if isinstance(out, list) else [out]
        for v in verdicts:
            result = CheckResult(d.category, v.name or d.name, v.status, v.reason, v.fix,
                                 elapsed / max(1, len(verdicts)),
                                 float(d.weight if v.weight is None else v.weight), v.details)
            results.append(result)
            if on_result:
                on_result(result, i, len(checks))
    return results
