"""Components: every endpoint of the public contract answers with the right status and type."""

from __future__ import annotations

import uuid

from sizewise_otel.validate.context import Context
from sizewise_otel.validate.expect import is_json, judge, media_type
from sizewise_otel.validate.model import Verdict, fail, ok
from sizewise_otel.validate.registry import check

HEALTH_JSON = "application/health+json"
PROM_TYPES = ("text/plain", "application/openmetrics-text")
ENABLE = {
    "metrics": "call instrument(app) (it adds GET /metrics) and keep METRICS_COLLECTION_ENABLED=true",
    "errors": "set ERROR_TRACKING_ENABLED=true (the /errors routes come with the error tracker)",
    "dashboard": "set PERFORMANCE_DASHBOARD_ENABLED=true (the /dashboard routes come with it)",
    "health": "set HEALTH_MONITORING_ENABLED=true (/health, /livez, /readyz come with the monitor)",
}


@check("components", "service answers /livez (public)", weight=2)
def livez(ctx: Context) -> Verdict:
    resp = ctx.get("/livez", auth=False)
    return judge(resp, media=HEALTH_JSON, disabled_fix=ENABLE["health"])


@check("components", "/readyz is public")
def readyz_public(ctx: Context) -> Verdict:
    resp = ctx.get("/readyz", auth=False)
    if resp.status_code in (401, 403):
        return fail(f"/readyz answered {resp.status_code} without credentials",
                    "probes carry no key: keep /livez and /readyz public")
    return judge(resp, status=(200, 503), media=HEALTH_JSON, disabled_fix=ENABLE["health"])


@check("components", "metrics: GET /metrics")
def metrics(ctx: Context) -> Verdict:
    resp, _ = ctx.metrics()
    verdict = judge(resp, media=PROM_TYPES, disabled_fix=ENABLE["metrics"])
    if resp.status_code == 401:
        verdict.fix = ("/metrics needs SIZEWISE_METRICS_TOKEN: export the same token in the "
                       "validator's environment")
    return verdict


@check("components", "health: GET /health")
def health(ctx: Context) -> Verdict:
    resp = ctx.cached_get("/health")
    verdict = judge(resp, status=(200, 503), media=HEALTH_JSON, disabled_fix=ENABLE["health"])
    if verdict.status != "pass":
        return verdict
    body = resp.json()
    missing = [k for k in ("status", "overall_status", "summary", "checks") if k not in body]
    if missing:
        return fail(f"/health lacks {', '.join(missing)} (details need a viewer key)",
                    "pass --api-key with a viewer key; the service must return the spec's "
                    "overall_status, summary and checks")
    return ok(f"{verdict.reason}, overall_status {body['overall_status']}, {len(body['checks'])} checks")


@check("components", "errors: GET /errors/summary")
def errors_summary(ctx: Context) -> Verdict:
    return judge(ctx.cached_get("/errors/summary"), disabled_fix=ENABLE["errors"])


@check("components", "errors: GET /errors/groups")
def errors_groups(ctx: Context) -> Verdict:
    resp = ctx.get("/errors/groups", params={"limit": 5})
    verdict = judge(resp, disabled_fix=ENABLE["errors"])
    if verdict.status == "pass" and not isinstance(resp.json().get("groups"), list):
        return fail("/errors/groups has no 'groups' list", "return {'groups': [...], 'next_cursor': ...}")
    return verdict


@check("components", "dashboard: GET /dashboard/overview")
def dashboard_overview(ctx: Context) -> Verdict:
    return judge(ctx.cached_get("/dashboard/overview"), disabled_fix=ENABLE["dashboard"])


@check("components", "unknown ids answer 404 JSON")
def unknown_ids(ctx: Context) -> Verdict:
    paths = [f"/errors/{uuid.uuid4()}", f"/errors/groups/{uuid.uuid4().hex}",
             f"/dashboard/widget/{ctx.token}", f"/dashboard/metrics/{ctx.token}"]
    wrong = []
    for path in paths:
        resp = ctx.get(path)
        if resp.status_code in (401, 403):
            return judge(resp)
        if resp.status_code != 404 or not is_json(resp):
            wrong.append(f"{path.replace(ctx.token, '<random>')} -> {resp.status_code} {media_type(resp)}")
    if wrong:
        return fail("; ".join(wrong), "answer unknown ids with 404 and a JSON body "
                    "(raise HTTPException(404, ...) in the route)")
    return ok(f"{len(paths)} unknown ids -> 404 application/json")
