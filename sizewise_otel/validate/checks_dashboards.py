"""Dashboards: every widget of the in-process API answers; with --prometheus, every Grafana panel
query of the checked-in dashboards returns data."""

from __future__ import annotations

from sizewise_otel.catalog import sizewise_signals
from sizewise_otel.validate import artifacts
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.expect import is_json, judge
from sizewise_otel.validate.model import Verdict, fail, ok, skip, warn
from sizewise_otel.validate.registry import check

ENABLE = "set PERFORMANCE_DASHBOARD_ENABLED=true (the /dashboard routes come with it)"


@check("dashboards", "every widget answers (/dashboard/widget/{id})")
def widgets(ctx: Context) -> Verdict:
    resp = ctx.get("/dashboard/widgets")
    verdict = judge(resp, disabled_fix=ENABLE)
    if verdict.status != "pass":
        return verdict
    ids = [w["id"] for w in resp.json().get("widgets", []) if isinstance(w, dict) and "id" in w]
    if not ids:
        return fail("/dashboard/widgets lists no widgets", "the widget catalog is empty")
    bad = []
    for wid in ids:
        r = ctx.get(f"/dashboard/widget/{wid}")
        if r.status_code != 200 or not is_json(r):
            bad.append(f"{wid} ({r.status_code})")
    if bad:
        return fail(f"{len(bad)}/{len(ids)} widgets failed: {', '.join(bad[:8])}",
                    "see the service log for these widget requests", failed=bad)
    return ok(f"all {len(ids)} widgets answered 200 JSON", widgets=len(ids))


@check("dashboards", "metric history (/dashboard/metrics/{name})")
def metric_history(ctx: Context) -> Verdict:
    names = [s.name for s in sizewise_signals()]
    bad = []
    for name in names:
        r = ctx.get(f"/dashboard/metrics/{name}")
        if r.status_code in (401, 403):
            return judge(r)
        if r.status_code != 200 or not is_json(r):
            bad.append(f"{name} ({r.status_code})")
    if bad:
        return fail(f"{len(bad)}/{len(names)} catalog metrics have no history: {', '.join(bad[:6])}",
                    "every catalog signal must be served by /dashboard/metrics/{name}", failed=bad)
    return ok(f"all {len(names)} SizeWise catalog metrics answered")


@check("dashboards", "Grafana panel queries return data (Prometheus)", weight=2)
def panel_queries(ctx: Context) -> Verdict:
    if not ctx.prometheus:
        return skip("needs --prometheus URL", "pass --prometheus to run every panel query")
    boards, source = artifacts.dashboards()
    errors, empty, total = [], [], 0
    for fname, board in boards.items():
        for title, expr in artifacts.panel_queries(board):
            total += 1
            try:
                if not ctx.prom_query(artifacts.substitute(expr)):
                    empty.append(f"{fname}: {title}")
            except ValueError as exc:
                errors.append(f"{fname}: {title}: {exc}")
    details = {"queries": total, "empty": empty, "errors": errors, "source": source}
    if not total:
        return fail(f"no panel queries found ({source})", "run `sizewise-otel render`", **details)
    if errors:
        return fail(f"{len(errors)}/{total} panel queries are rejected by Prometheus: {errors[0]}",
                    "fix the widget's expression in sizewise_otel/dashboard/widgets.py and run "
                    "`sizewise-otel render`", **details)
    if empty:
        return warn(f"{len(empty)}/{total} panel queries return no data: {', '.join(empty[:5])}",
                    "these panels show 'No data': check that Prometheus scrapes the service (job and "
                    "instance labels) and that the signal has had traffic", **details)
    return ok(f"all {total} panel queries of {len(boards)} dashboards return data ({source})", **details)
