"""Error tracking: a synthetic error goes through capture -> scrub -> group -> store -> API."""

from __future__ import annotations

import json
import re
from typing import Any

from sizewise_otel.validate.context import Context
from sizewise_otel.validate.expect import judge
from sizewise_otel.validate.model import Verdict, fail, ok, skip, warn
from sizewise_otel.validate.readiness_facts import exposed, open_access
from sizewise_otel.validate.registry import check

DIAG_FIX = ("add the admin-only POST /errors/diagnostics route (ERROR_TRACKING_ENABLED=true) and "
            "pass an admin key with --api-key")

# What must never be stored verbatim: secrets the scrubber is meant to replace.
LEAKS: dict[str, re.Pattern[str]] = {
    "bearer token": re.compile(r"(?i)\bbearer\s+(?!\[)[A-Za-z0-9._~+/=-]{6,}"),
    "password/secret value": re.compile(
        r"(?i)\b[\w.-]*(?:password|passwd|secret|api[_-]?key|token)[\w.-]*[\"']?\s*[=:]\s*[\"']?"
        r"(?!\[|\*|<|\"|')[^\s\"',;&)}\]]{4,}"),
    "credentials in a URL": re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/@:\"]+:(?!\[)[^\s/@\"]+@"),
    "email address": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
}


def diagnostics(ctx: Context) -> dict[str, Any]:
    """POST /errors/diagnostics once per run; the answer is shared by the checks below."""
    if "diagnostics" not in ctx.cache:
        resp = ctx.request("POST", "/errors/diagnostics")
        ctx.cache["diagnostics"] = {"resp": resp, "body": resp.json() if judge(resp).status == "pass" else None}
    return ctx.cache["diagnostics"]


@check("errors", "synthetic error captured (POST /errors/diagnostics)", weight=2)
def synthetic_captured(ctx: Context) -> Verdict:
    diag = diagnostics(ctx)
    verdict = judge(diag["resp"], disabled_fix=DIAG_FIX)
    if verdict.status != "pass":
        return verdict
    body = diag["body"]
    if not body.get("error_id"):
        return fail("the diagnostics answer has no error_id", DIAG_FIX)
    if not body.get("stored"):
        pipe = body.get("pipeline") or {}
        return fail(f"error {body['error_id']} was captured but not stored "
                    f"(last store error: {pipe.get('last_store_error')})",
                    "check ERROR_STORE_URL / DATABASE_URL: the error store must be reachable and writable")
    return ok(f"error {body['error_id']} stored in group {body.get('group_id')}",
              error_id=body["error_id"], group_id=body.get("group_id"))


@check("errors", "diagnostics are admin-only")
def diagnostics_admin_only(ctx: Context) -> Verdict:
    resp = ctx.request("POST", "/errors/diagnostics", auth=False)
    if resp.status_code in (401, 403):
        return ok(f"anonymous POST /errors/diagnostics -> {resp.status_code}")
    if resp.status_code == 404:
        return fail("POST /errors/diagnostics is missing", DIAG_FIX)
    if resp.status_code < 300 and open_access(ctx):
        text = "anyone can write synthetic errors (no SIZEWISE_API_KEYS)"
        fix = "set SIZEWISE_API_KEYS with an admin key"
        return fail(text, fix) if exposed(ctx) is not False else warn(text + " - loopback only", fix)
    return fail(f"anonymous POST /errors/diagnostics -> {resp.status_code}",
                "protect the route with require('admin')")


@check("errors", "synthetic error grouped (/errors/groups, /errors/{id})")
def synthetic_grouped(ctx: Context) -> Verdict:
    body = diagnostics(ctx)["body"]
    if not body or not body.get("error_id"):
        return fail("no synthetic error to look for (the diagnostics step failed)", DIAG_FIX)
    error_id = body["error_id"]
    resp = ctx.get(f"/errors/{error_id}")
    verdict = judge(resp)
    if verdict.status != "pass":
        verdict.reason = f"the synthetic error is not readable: {verdict.reason}"
        return verdict
    event = resp.json()
    group_id = (event.get("event") or {}).get("group_id") or (event.get("group") or {}).get("group_id")
    if not group_id:
        return fail(f"/errors/{error_id} names no group", "store each event with its group_id")
    groups = ctx.get("/errors/groups", params={"limit": 200})
    if judge(groups).status != "pass":
        return judge(groups)
    found = next((g for g in groups.json().get("groups", []) if g.get("group_id") == group_id), None)
    if found is None:
        return fail(f"group {group_id} of the synthetic error is not listed in /errors/groups",
                    "list groups by last_seen, newest first, so a new group is on the first page")
    return ok(f"group {group_id} listed ({found.get('count')} event(s), status {found.get('status')})",
              group_id=group_id)


def _events(ctx: Context, limit: int = 5) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    body = diagnostics(ctx)["body"] or {}
    ids = [body["error_id"]] if body.get("error_id") else []
    groups = ctx.get("/errors/groups", params={"limit": limit})
    if groups.status_code == 200:
        for g in groups.json().get("groups", [])[:limit]:
            detail = ctx.get(f"/errors/groups/{g.get('group_id')}")
            if detail.status_code == 200:
                ids += list(detail.json().get("sample_event_ids") or [])[:1]
    for error_id in dict.fromkeys(ids):
        resp = ctx.get(f"/errors/{error_id}")
        if resp.status_code == 200:
            events.append(resp.json())
    return events


@check("errors", "stored errors are scrubbed")
def scrubbed(ctx: Context) -> Verdict:
    events = _events(ctx)
    if not events:
        return skip("no stored error could be read", DIAG_FIX)
    secrets = {"the validator's API key": ctx.api_key, "the metrics token": ctx.metrics_token}
    found: list[str] = []
    for event in events:
        text = json.dumps(event)
        for what, value in secrets.items():
            if value and value in text:
                found.append(what)
        for what, pattern in LEAKS.items():
            m = pattern.search(text)
            if m:
                found.append(f"{what} ({m.group(0)[:12]}...)")
    if found:
        return fail(f"unscrubbed data in {len(events)} stored event(s): {', '.join(sorted(set(found)))}",
                    "the ErrorTracker must scrub message, context and stack locals before storing "
                    "(sizewise_otel.errors.scrub; add keys/patterns for your data)")
    return ok(f"{len(events)} stored event(s) carry no key, token, password, URL credentials or email")


@check("errors", "error pipeline (queue, writer, store)")
def pipeline(ctx: Context) -> Verdict:
    resp = ctx.cached_get("/errors/summary")
    if judge(resp).status != "pass":
        return judge(resp)
    pipe = resp.json().get("pipeline")
    if not isinstance(pipe, dict):
        return warn("/errors/summary reports no pipeline state", "include the tracker's diagnostics()")
    dropped = {k: v for k, v in (pipe.get("dropped") or {}).items() if v}
    if pipe.get("store_ok") is False or pipe.get("writer_running") is False:
        return fail(f"error store not OK (writer running: {pipe.get('writer_running')}, last error: "
                    f"{pipe.get('last_store_error')})",
                    "check ERROR_STORE_URL / DATABASE_URL: the error store must be reachable and writable")
    if dropped:
        return warn(f"error events dropped: {dropped}",
                    "raise ERROR_QUEUE_SIZE or fix the store's availability (see last_store_error)")
    return ok(f"writer running, store OK, queue {pipe.get('queue_depth')}/{pipe.get('queue_size')}, "
              "nothing dropped")
