"""Health documents: the IETF ``application/health+json`` shape plus the spec's fields.

Top level: ``status`` (pass/warn/fail), ``checks`` keyed ``component:measurement`` (each a list of
objects with ``observedValue``, ``observedUnit``, ``status``, ``time``, ``output``), and the spec's
``overall_status`` (healthy/warning/critical) and ``summary`` counts. SizeWise extensions inside
each check object use snake_case: ``check``, ``health``, ``critical``, ``impact``, ``reason``,
``advice``, ``threshold``, ``age_seconds``, ``duration_ms``, ``affects``, ``uptime``, ``details``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sizewise_otel.health.model import CheckResult, CheckSpec, Status

MEDIA_TYPE = "application/health+json"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_status(status: Status) -> int:
    """200 for pass and warn, 503 for fail."""
    return 503 if status is Status.CRITICAL else 200


def aggregate(results: Iterable[CheckResult]) -> tuple[Status, dict[str, int]]:
    """Overall status (critical > warning > healthy over each check's impact) and counts."""
    summary = {"healthy": 0, "warning": 0, "critical": 0}
    impacts = []
    for result in results:
        impacts.append(result.impact)
        summary[result.impact.value] += 1
    summary["total"] = len(impacts)
    return Status.worst(impacts), summary


def capability_status(needs: Mapping[str, list[str]],
                      results: Mapping[str, CheckResult]) -> dict[str, Any]:
    """One capability: unavailable if a required check is critical, degraded on anything else."""
    required, optional = needs.get("requires", []), needs.get("optional", [])
    impaired: list[str] = []
    state = "available"
    for name in required:
        r = results.get(name)
        if r is None:
            continue
        if r.status is Status.CRITICAL:
            state = "unavailable"
            impaired.append(name)
        elif r.status is Status.WARNING:
            state = "degraded" if state == "available" else state
            impaired.append(name)
    for name in optional:
        r = results.get(name)
        if r is not None and r.status is not Status.HEALTHY:
            state = "degraded" if state == "available" else state
            impaired.append(name)
    return {"status": state, "requires": list(required), "optional": list(optional),
            "impaired_by": impaired}


def check_entry(spec: CheckSpec, result: CheckResult, *, now_mono: float, affects: list[str],
                uptime: dict[str, float | None] | None) -> dict[str, Any]:
    o = result.outcome
    entry: dict[str, Any] = {
        "componentId": spec.component,
        "componentType": spec.component_type,
        "observedValue": o.observed_value,
        "observedUnit": o.observed_unit,
        "status": result.status.ietf,
        "time": iso(result.checked_at),
        "output": o.message,
        "check": spec.name,
        "health": result.status.value,
        "critical": spec.critical,
        "impact": result.impact.value,
        "age_seconds": round(result.age(now_mono), 3),
        "duration_ms": round(result.duration_s * 1000, 2),
        "affects": affects,
    }
    if o.threshold is not None:
        entry["threshold"] = o.threshold
    if o.reason:
        entry["reason"] = o.reason
    if result.status is not Status.HEALTHY and o.advice:
        entry["advice"] = o.advice
    if uptime is not None:
        entry["uptime"] = uptime
    if o.details:
        entry["details"] = o.details
    return entry


def document(pairs: list[tuple[CheckSpec, CheckResult]], *, now_wall: float, now_mono: float,
             service: Mapping[str, str], capabilities: Mapping[str, Mapping[str, list[str]]],
             uptime: Mapping[str, dict[str, float | None]] | None = None) -> dict[str, Any]:
    """The full (viewer) document."""
    results = {spec.name: result for spec, result in pairs}
    overall, summary = aggregate(results.values())
    affects: dict[str, list[str]] = {}
    for cap, needs in capabilities.items():
        for name in (*needs.get("requires", []), *needs.get("optional", [])):
            affects.setdefault(name, []).append(cap)
    checks: dict[str, list[dict[str, Any]]] = {}
    problems: list[dict[str, Any]] = []
    for spec, result in pairs:
        entry = check_entry(spec, result, now_mono=now_mono, affects=affects.get(spec.name, []),
                            uptime=(uptime or {}).get(spec.name))
        checks.setdefault(spec.key, []).append(entry)
        if result.status is not Status.HEALTHY:
            problems.append({"check": spec.name, "health": result.status.value,
                             "impact": result.impact.value, "reason": result.outcome.reason,
                             "output": result.outcome.message, "advice": result.outcome.advice,
                             "affects": affects.get(spec.name, [])})
    problems.sort(key=lambda p: (-Status(p["impact"]).rank, -Status(p["health"]).rank, p["check"]))
    output = "; ".join(f"{p['check']}: {p['output']}" for p in problems)
    return {
        "status": overall.ietf,
        "version": service.get("version", ""),
        "serviceId": service.get("service_id", ""),
        "description": service.get("description", ""),
        "time": iso(now_wall),
        **({"output": output} if output else {}),
        "overall_status": overall.value,
        "summary": summary,
        "checks": checks,
        "dependencies": {cap: capability_status(needs, results) for cap, needs in capabilities.items()},
        "recommendations": problems,
    }


def public_document(full: Mapping[str, Any]) -> dict[str, Any]:
    """What an anonymous caller sees: the status only."""
    return {"status": full["status"], "overall_status": full["overall_status"], "time": full["time"]}
