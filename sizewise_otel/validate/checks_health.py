"""Health: every check reports, none slower than its timeout; /readyz and the gauges agree."""

from __future__ import annotations

import re
from typing import Any

from sizewise_otel.validate.context import Context
from sizewise_otel.validate.expect import judge
from sizewise_otel.validate.model import Verdict, fail, ok, warn
from sizewise_otel.validate.registry import check

DEFAULT_TIMEOUT_S = 2.0  # HEALTH_CHECK_TIMEOUT_SECONDS' default, when the service's value is unknown


def _document(ctx: Context) -> dict[str, Any] | None:
    resp = ctx.cached_get("/health")
    if resp.status_code not in (200, 503):
        return None
    body = resp.json()
    return body if isinstance(body.get("checks"), dict) else None


def _entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for entries in doc["checks"].values() for e in entries if isinstance(e, dict)]


@check("health", "every health check reports")
def every_check_reports(ctx: Context) -> Verdict:
    doc = _document(ctx)
    if doc is None:
        return judge(ctx.cached_get("/health"), status=(200, 503), media="application/health+json")
    entries = _entries(doc)
    if not entries:
        return fail("/health lists no checks", "register checks (instrument(app, engine=..., redis=...))")
    incomplete = [e.get("check", "?") for e in entries if not e.get("status") or not e.get("time")]
    summary = doc.get("summary") or {}
    if incomplete:
        return fail(f"checks without status/time: {', '.join(incomplete)}",
                    "every check entry needs status and time (application/health+json)")
    if summary.get("total") not in (None, len(entries)):
        return warn(f"summary.total {summary.get('total')} but {len(entries)} checks listed",
                    "count every check in summary")
    return ok(f"{len(entries)} checks: " + ", ".join(e.get("check", "?") for e in entries),
              checks=[e.get("check") for e in entries])


@check("health", "health check")
def each_check(ctx: Context) -> Verdict | list[Verdict]:
    """One result per health check: healthy -> pass, warning -> warn, critical -> fail."""
    doc = _document(ctx)
    if doc is None:
        return fail("no health details to read", "pass --api-key with a viewer key")
    out = []
    for e in _entries(doc):
        name = f"health: {e.get('check') or e.get('componentId')}"
        # The check's own state decides: a dependency that is down fails the deployment's
        # validation even when the service only degrades without it (its impact is then named).
        health = e.get("health") or {"pass": "healthy", "warn": "warning"}.get(e.get("status", ""), "critical")
        impact = e.get("impact") or health
        text = e.get("output") or e.get("status", "")
        if impact != health:
            text += f" (impact on the service: {impact})"
        fix = e.get("advice") or (f"see the check's reason: {e['reason']}" if e.get("reason") else
                                  "see /health for this check")
        if health == "healthy":
            v = ok(text)
        elif health == "warning":
            v = warn(f"warning: {text}", fix)
        else:
            v = fail(f"critical: {text}", fix)
        v.name = name
        out.append(v)
    return out or fail("/health lists no checks", "register health checks")


def _timeout_s(ctx: Context) -> tuple[float, str]:
    s = ctx.view.settings if ctx.loopback else None
    if s is not None:
        return s.health_check_timeout_seconds, ctx.view.source
    return DEFAULT_TIMEOUT_S, "the default (the service's value is not visible remotely)"


@check("health", "health checks finish within their timeout")
def within_timeout(ctx: Context) -> Verdict:
    doc = _document(ctx)
    if doc is None:
        return fail("no health details to read", "pass --api-key with a viewer key")
    timeout, source = _timeout_s(ctx)
    slow = []
    for e in _entries(doc):
        ms = e.get("duration_ms")
        if e.get("reason") == "timeout" or (isinstance(ms, int | float) and ms > timeout * 1000):
            slow.append(f"{e.get('check')} ({ms} ms)")
    if slow:
        return fail(f"slower than the {timeout:g} s timeout (from {source}): {', '.join(slow)}",
                    "fix the slow dependency or raise HEALTH_CHECK_TIMEOUT_SECONDS")
    longest = max((e.get("duration_ms") or 0 for e in _entries(doc)), default=0)
    return ok(f"slowest check {longest} ms, timeout {timeout:g} s", slowest_ms=longest)


@check("health", "readiness (GET /readyz)")
def readiness(ctx: Context) -> Verdict:
    resp = ctx.get("/readyz", auth=False)
    if resp.status_code == 200:
        return ok(f"/readyz 200 ({resp.json().get('overall_status', resp.json().get('status'))})")
    if resp.status_code == 503:
        failing = resp.json().get("failing") or []
        return fail(f"/readyz 503: not ready, failing {', '.join(failing) or '?'}",
                    "fix the failing critical dependencies (see their health checks and /health advice)")
    return judge(resp, status=(200, 503), media="application/health+json")


@check("health", "health gauges match /health")
def gauges_match(ctx: Context) -> Verdict:
    doc = _document(ctx)
    if doc is None:
        return fail("no health details to read", "pass --api-key with a viewer key")
    listed = {e.get("check") for e in _entries(doc)}

    def on_metrics(resp: Any) -> set[str]:
        return set(re.findall(r'^sizewise_health_status\{[^}]*sizewise_health_check="([^"]+)"', resp.text, re.M))

    resp = ctx.metrics_until(lambda r: listed <= on_metrics(r))
    if resp.status_code != 200:
        return fail(f"/metrics answered {resp.status_code}", "see the metrics check")
    missing = sorted(n for n in listed - on_metrics(resp) if n)
    if missing:
        return fail(f"no sizewise_health_status series for: {', '.join(missing)}",
                    "the HealthMonitor registers sizewise.health.status on the MeterProvider that "
                    "/metrics reads: build it with the service's Telemetry (instrument() does)")
    return ok(f"sizewise_health_status has all {len(listed)} checks")
