"""Production readiness.

Seen from the outside (any URL): whether anonymous callers are refused, whether /health hides its
details from them, whether /metrics is open on an exposed address, the health retention
(``/health/history``). Seen on the service's machine (loopback URL only, see ``local.py``): the bind
address, and the settings only the process knows (sampling, retention, OTLP endpoint, log level).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from sizewise_otel.settings import DEFAULT_SAMPLER_RATIO, Settings
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.local import is_loopback_host, is_wildcard
from sizewise_otel.validate.model import Verdict, fail, ok, skip, warn
from sizewise_otel.validate.readiness_facts import exposed, open_access
from sizewise_otel.validate.registry import check

KEYS_FIX = ('set SIZEWISE_API_KEYS="viewer:<key>,admin:<key>" (or SIZEWISE_API_KEYS_FILE, one '
            "role:key a line)")
BIND_FIX = ("bind to 127.0.0.1 (sizewise-otel demo --host 127.0.0.1, uvicorn --host 127.0.0.1), or "
            + KEYS_FIX)
REMOTE_ONLY = "only visible on the service's machine: run validate there with a loopback --url"
RETENTION_BOUNDS = (24, 24 * 30)  # hours: a day to investigate, at most a month kept locally


def _settings(ctx: Context) -> Settings | None:
    return ctx.view.settings if ctx.loopback else None


def _src(ctx: Context) -> dict[str, str]:
    return {"source": ctx.view.source}


@check("readiness", "API keys configured", weight=3)
def keys_configured(ctx: Context) -> Verdict:
    opened = open_access(ctx)
    if opened is False:
        return ok("anonymous reads of /errors/summary are refused (401)")
    if opened is None:
        return warn("could not tell: anonymous /errors/summary answered neither 200 nor 401",
                    "enable the error tracker so the access control can be observed")
    if exposed(ctx) is False:
        return warn("no API keys: monitoring endpoints are open (the service listens on loopback only)",
                    KEYS_FIX + " before exposing the service")
    return fail("no API keys: anyone who reaches the service reads errors and health details", KEYS_FIX)


@check("readiness", "not bound to all interfaces without keys", weight=3)
def bind_address(ctx: Context) -> Verdict:
    opened = open_access(ctx)
    if not ctx.loopback:
        if opened:
            return fail(f"{ctx.host} is reachable from the network and has no API keys", KEYS_FIX)
        return ok(f"reachable at {ctx.host}, keys required")
    addresses = ctx.view.listen_addresses
    if not addresses:
        return warn(f"no listener on port {ctx.port} visible in the socket table",
                    "run validate on the service's machine, as its user or root")
    wide = [a for a in addresses if is_wildcard(a) or not is_loopback_host(a)]
    where = ", ".join(f"{'[' + a + ']' if ':' in a else a}:{ctx.port}" for a in addresses)
    if wide and opened:
        return fail(f"listening on {where} without API keys", BIND_FIX, listen=addresses)
    if wide:
        return ok(f"listening on {where}, keys required", listen=addresses)
    return ok(f"listening on {where} (loopback only)", listen=addresses)


@check("readiness", "anonymous /health shows status only")
def health_public(ctx: Context) -> Verdict:
    if open_access(ctx):
        return skip("no API keys: everything is open (see 'API keys configured')")
    resp = ctx.get("/health", auth=False)
    if resp.status_code not in (200, 503):
        return fail(f"anonymous /health answered {resp.status_code}",
                    "answer anonymous callers with the status only (load balancers need it)")
    leaked = [k for k in ("checks", "recommendations", "dependencies") if k in resp.json()]
    if leaked:
        return fail(f"anonymous /health shows {', '.join(leaked)}",
                    "show details to viewers only (optional_principal + allows('viewer'))")
    return ok(f"anonymous /health: {sorted(resp.json())}")


@check("readiness", "/metrics protected on an exposed address")
def metrics_protected(ctx: Context) -> Verdict:
    if exposed(ctx) is False:
        return ok("loopback only: /metrics is not reachable from other machines")
    resp = ctx.get("/metrics", auth=False)
    if resp.status_code in (401, 403):
        return ok("anonymous /metrics refused (SIZEWISE_METRICS_TOKEN set)")
    return warn("anyone who reaches the port can read /metrics (service, route and error names)",
                "set SIZEWISE_METRICS_TOKEN (Prometheus sends it via authorization.credentials_file) "
                "or allow only Prometheus at the network level")


@check("readiness", "trace sampling ratio set")
def sampling(ctx: Context) -> Verdict:
    s = _settings(ctx)
    if s is None:
        return skip(REMOTE_ONLY)
    sampler, ratio = s.otel_traces_sampler.lower(), s.traces_sampler_ratio
    arg = DEFAULT_SAMPLER_RATIO if ratio is None else ratio  # what build_sampler uses (after a warning)
    fix = "set OTEL_TRACES_SAMPLER=parentbased_traceidratio and OTEL_TRACES_SAMPLER_ARG (e.g. 0.1)"
    if sampler.endswith("always_off") or (sampler.endswith("traceidratio") and arg == 0):
        return warn(f"{sampler} (arg {arg:g}): no trace is kept", fix, **_src(ctx))
    if sampler.endswith("always_on") or (sampler.endswith("traceidratio") and arg >= 1):
        return warn(f"{sampler} (arg {arg:g}): every trace is kept, costly at production volume",
                    fix, **_src(ctx))
    if not sampler.endswith("traceidratio"):
        return warn(f"sampler {sampler}: no ratio", fix, **_src(ctx))
    return ok(f"{sampler} at {arg:g} ({ctx.view.source})", **_src(ctx))


@check("readiness", "retention within bounds")
def retention(ctx: Context) -> Verdict:
    lo, hi = RETENTION_BOUNDS
    values: dict[str, int] = {}
    s = _settings(ctx)
    if s is not None:
        values = {"METRICS_RETENTION_HOURS": s.metrics_retention_hours,
                  "ERROR_RETENTION_HOURS": s.error_retention_hours,
                  "HEALTH_RETENTION_HOURS": s.health_retention_hours}
    else:
        resp = ctx.get("/health/history", params={"limit": 1})
        if resp.status_code == 200 and isinstance(resp.json().get("retention_hours"), int | float):
            values = {"HEALTH_RETENTION_HOURS": resp.json()["retention_hours"]}
    if not values:
        return skip(REMOTE_ONLY)
    out = {k: v for k, v in values.items() if not lo <= v <= hi}
    text = ", ".join(f"{k}={v}" for k, v in values.items())
    if out:
        return warn(f"outside {lo}-{hi} h: " + ", ".join(f"{k}={v}" for k, v in out.items()),
                    f"keep {lo}-{hi} hours locally (a day to investigate; long-term history belongs "
                    "in remote storage)", **values)
    return ok(text, **values)


def _private(host: str) -> bool:
    if "." not in host:
        return True  # a single-label name: a service on a private (compose/cluster) network
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return host.endswith((".local", ".internal", ".svc", ".cluster.local"))


@check("readiness", "OTLP over TLS when not on loopback")
def otlp_tls(ctx: Context) -> Verdict:
    s = _settings(ctx)
    if s is None:
        return skip(REMOTE_ONLY)
    endpoint = s.otel_exporter_otlp_endpoint
    if not endpoint:
        return ok("OTLP push off (metrics pulled from /metrics)")
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    host = parts.hostname or ""
    if parts.scheme == "https":
        return ok(f"OTLP to {parts.netloc} over TLS")
    if is_loopback_host(host):
        return ok(f"OTLP to {parts.netloc} on loopback")
    fix = f"use https://{parts.netloc} (a collector receiver with tls:) for OTEL_EXPORTER_OTLP_ENDPOINT"
    if _private(host):
        return warn(f"OTLP in clear text to {parts.netloc} (private network)", fix)
    return fail(f"OTLP in clear text to {parts.netloc}", fix)


@check("readiness", "debug logging off")
def debug_off(ctx: Context) -> Verdict:
    s = _settings(ctx)
    if s is None:
        return skip(REMOTE_ONLY)
    if s.log_level == "DEBUG":
        return fail("LOG_LEVEL=DEBUG: verbose logs may carry request data", "set LOG_LEVEL=INFO",
                    **_src(ctx))
    return ok(f"LOG_LEVEL={s.log_level}", **_src(ctx))
