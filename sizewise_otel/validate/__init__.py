"""``sizewise-otel validate``: check a running SizeWise deployment and score it.

``main(args)`` takes the CLI's namespace (url, prometheus, alertmanager, api_key, json, min_score),
prints a progress line per check on stderr, then the table (or ``--json``) on stdout, and returns
0 when the score reaches ``--min-score``, 1 otherwise. See docs/validate.md.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sizewise_otel.validate import checks as _checks  # noqa: F401  (registers every check)
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.model import CheckResult, Status, score
from sizewise_otel.validate.registry import run_checks
from sizewise_otel.validate.report import Progress, as_json, dump_json, table

__all__ = ["CheckResult", "Status", "main", "score", "validate"]


def validate(url: str, *, api_key: str | None = None, prometheus: str | None = None,
             alertmanager: str | None = None, progress: Any = None) -> tuple[list[CheckResult], Context]:
    """Run every check against ``url``; returns the results and the context (for reporting)."""
    ctx = Context(url, api_key=api_key, prometheus=prometheus, alertmanager=alertmanager,
                  metrics_token=os.environ.get("SIZEWISE_METRICS_TOKEN") or None)
    try:
        return run_checks(ctx, on_result=progress), ctx
    finally:
        ctx.close()


def main(args: Any) -> int:
    api_key = getattr(args, "api_key", None) or os.environ.get("SIZEWISE_VALIDATE_API_KEY") or None
    min_score = float(getattr(args, "min_score", 90.0))
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    t0 = time.perf_counter()
    results, ctx = validate(args.url, api_key=api_key, prometheus=getattr(args, "prometheus", None),
                            alertmanager=getattr(args, "alertmanager", None),
                            progress=Progress(sys.stderr))
    if getattr(args, "json", False):
        doc = as_json(results, url=ctx.url, prometheus=ctx.prometheus, alertmanager=ctx.alertmanager,
                      min_score=min_score, started_at=started, duration=time.perf_counter() - t0,
                      local_source=ctx.view.source if ctx.loopback else None)
        sys.stdout.write(dump_json(doc))
    else:
        sys.stdout.write(table(results, url=ctx.url, min_score=min_score))
    sys.stdout.flush()
    return 0 if score(results) >= min_score else 1
