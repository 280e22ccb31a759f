"""Performance characteristics: latency of a probe request with and without trace-context headers
(a sampled ``traceparent`` makes the service record and export the span), and the /metrics size."""

from __future__ import annotations

import math
import secrets
import time

from sizewise_otel.validate.context import Context
from sizewise_otel.validate.model import Verdict, fail, ok, warn
from sizewise_otel.validate.registry import check

PROBE_PATH = "/health"  # instrumented, cheap (cached results), present on every deployment
ROUNDS = 25
P95_WARN_S, P95_FAIL_S = 0.25, 1.0
OVERHEAD_WARN_S = 0.025  # extra p95 allowed for a sampled request (or 50 % of the base, if more)
SIZE_WARN, SIZE_FAIL = 1 << 20, 4 << 20


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@check("performance", f"p95 of GET {PROBE_PATH}, with and without trace headers")
def probe_latency(ctx: Context) -> Verdict:
    plain: list[float] = []
    traced: list[float] = []
    for i in range(2 * ROUNDS + 2):
        headers = {"traceparent": _traceparent()} if i % 2 else None
        t0 = time.perf_counter()
        resp = ctx.get(PROBE_PATH, auth=False, headers=headers)
        elapsed = time.perf_counter() - t0
        if resp.status_code not in (200, 503):
            return fail(f"{PROBE_PATH} answered {resp.status_code}", "see the health checks")
        if i >= 2:  # the first pair warms connections and caches
            (traced if headers else plain).append(elapsed)
    base, with_trace = p95(plain), p95(traced)
    overhead = with_trace - base
    text = (f"p95 {base * 1000:.1f} ms plain, {with_trace * 1000:.1f} ms with a sampled traceparent "
            f"({overhead * 1000:+.1f} ms), {ROUNDS} requests each")
    details = {"p95_plain_ms": round(base * 1000, 2), "p95_traced_ms": round(with_trace * 1000, 2),
               "rounds": ROUNDS}
    slowest = max(base, with_trace)
    if slowest > P95_FAIL_S:
        return fail(text, "the service is saturated or a dependency is slow: check /health (event loop, "
                    "CPU, database) and the service's workers", **details)
    if slowest > P95_WARN_S:
        return warn(text, "check /health for event-loop lag and CPU; add workers or capacity", **details)
    if overhead > max(OVERHEAD_WARN_S, 0.5 * base):
        return warn(text, "span export is slow: use the BatchSpanProcessor (the default) and a nearby "
                    "collector; lower OTEL_TRACES_SAMPLER_ARG", **details)
    return ok(text, **details)


@check("performance", "/metrics size")
def metrics_size(ctx: Context) -> Verdict:
    resp, _ = ctx.metrics(fresh=True)
    if resp.status_code != 200:
        return fail(f"/metrics answered {resp.status_code}", "see the components: GET /metrics check")
    size = len(resp.content)
    series = sum(1 for line in resp.text.splitlines() if line and not line.startswith("#"))
    text = f"{size / 1024:.0f} KiB, {series} series"
    fix = ("drop unneeded instrumentations or buckets (catalog.py), and check for unbounded labels "
           "(metrics: no series with client-chosen label values)")
    if size > SIZE_FAIL:
        return fail(text, fix, bytes=size, series=series)
    if size > SIZE_WARN:
        return warn(text, fix, bytes=size, series=series)
    return ok(text, bytes=size, series=series)
