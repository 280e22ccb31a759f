"""Metrics: the catalog's series exist (on /metrics, and in Prometheus when given), their labels
are the declared ones, no label takes a client-chosen value, and a scrape is quick."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from sizewise_otel.catalog import SIGNALS, Owner, Signal
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.model import Verdict, fail, ok, skip, warn
from sizewise_otel.validate.registry import check

# Signals present on any instrumented service once it has answered a request (the validator's
# own requests are enough): missing ones mean a component was not wired.
ALWAYS = ("http.server.request.duration", "http.server.active_requests", "sizewise.cpu.usage",
          "sizewise.memory.usage", "sizewise.disk.usage", "system.network.io",
          "process.memory.usage", "sizewise.error.rate", "sizewise.health.status",
          "sizewise.health.check.duration", "sizewise.errors")
# Signals that appear once their kind of traffic has happened (the demo's load produces them all).
TRAFFIC = ("http.client.request.duration", "db.client.operation.duration", "db.client.connection.count",
           "db.client.connection.max",
           "sizewise.cache.operations", "sizewise.cache.operation.duration", "sizewise.hvac.calculations",
           "sizewise.hvac.calculation.duration", "sizewise.sessions.active", "sizewise.error.groups.new")
# Every other catalog signal depends on events (drops, notifications, export failures) or on the
# environment (container limits): its absence says nothing, so it is not checked.
# Labels every exporter may add.
STANDARD_LABELS = {"le", "job", "instance", "otel_scope_name", "otel_scope_version",
                   "otel_scope_schema_url", "quantile"}
ALWAYS_FIX = {
    "sizewise.errors": "ERROR_TRACKING_ENABLED=true: the tracker counts every captured error",
    "sizewise.health.status": "HEALTH_MONITORING_ENABLED=true: the monitor registers the health gauges",
    "sizewise.health.check.duration": "HEALTH_MONITORING_ENABLED=true",
    "http.server.request.duration": "instrument(app) wires the OTel HTTP server instrumentation",
    "http.server.active_requests": "instrument(app) wires the OTel HTTP server instrumentation",
}
DEFAULT_FIX = ("METRICS_COLLECTION_ENABLED=true: instrument() registers the system and error-rate "
               "gauges only when metrics collection is on")


def _traffic() -> list[Signal]:
    return [s for s in SIGNALS if s.name in TRAFFIC]


def _labels(text: str) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def _names(ctx: Context) -> dict[str, set[str]] | None:
    """Sample name -> the label names seen on it. Scraped until every always-present series is
    there (or one collection tier has passed), then shared by the checks below."""
    if "metric_labels" not in ctx.cache:
        wanted = {s.sample_name for s in SIGNALS if s.name in ALWAYS}
        resp = ctx.metrics_until(lambda r: wanted <= set(_labels(r.text)))
        if resp.status_code != 200:
            return None
        ctx.cache["metric_labels"] = _labels(resp.text)
    return ctx.cache["metric_labels"]


def _fix_for(missing: list[Signal]) -> str:
    fixes = dict.fromkeys(ALWAYS_FIX.get(s.name, DEFAULT_FIX) for s in missing)
    return "; ".join(fixes)


@check("metrics", "catalog series on /metrics", weight=2)
def catalog_series(ctx: Context) -> Verdict:
    names = _names(ctx)
    if names is None:
        return fail("/metrics could not be read", "see the components: GET /metrics check")
    missing = [s for s in SIGNALS if s.name in ALWAYS and s.sample_name not in names]
    if missing:
        return fail("missing: " + ", ".join(s.prom_name for s in missing), _fix_for(missing),
                    missing=[s.prom_name for s in missing])
    return ok(f"all {len(ALWAYS)} always-present catalog series found")


@check("metrics", "traffic series on /metrics")
def traffic_series(ctx: Context) -> Verdict:
    names = _names(ctx)
    if names is None:
        return fail("/metrics could not be read", "see the components: GET /metrics check")
    expected = _traffic()
    missing = [s for s in expected if s.sample_name not in names]
    if missing:
        return warn(f"{len(missing)}/{len(expected)} not seen yet: " + ", ".join(s.prom_name for s in missing),
                    "these appear once their kind of traffic has happened (database, cache, outbound "
                    "HTTP, calculations, sessions); if that traffic exists, pass engine=/redis= to "
                    "instrument() and record through the catalog's instruments",
                    missing=[s.prom_name for s in missing])
    return ok(f"all {len(expected)} traffic series found")


@check("metrics", "series carry only declared labels")
def declared_labels(ctx: Context) -> Verdict:
    names = _names(ctx)
    if names is None:
        return fail("/metrics could not be read", "see the components: GET /metrics check")
    extra: list[str] = []
    for s in SIGNALS:
        if s.owner is not Owner.SIZEWISE:
            continue  # OTel instrumentations add optional semantic-convention attributes
        allowed = set(s.prom_labels) | STANDARD_LABELS
        for sample in (s.prom_name, f"{s.prom_name}_bucket", f"{s.prom_name}_count"):
            for label in sorted(names.get(sample, set()) - allowed):
                extra.append(f"{s.prom_name}{{{label}}}")
    if extra:
        return fail("labels not declared in the catalog: " + ", ".join(sorted(set(extra))),
                    "declare the attribute in sizewise_otel/catalog.py with its cardinality bound, "
                    "or stop recording it")
    return ok("every SizeWise series uses only its catalog attributes")


@check("metrics", "no series with client-chosen label values", weight=2)
def client_chosen_values(ctx: Context) -> Verdict:
    token = ctx.token
    probes = [
        ("GET", f"/{token}/unknown-path", {"Host": f"{token}.invalid"}),
        ("GET", f"/api/projects/{token}", {"User-Agent": f"validator-{token}", "X-Session-Id": token}),
        ("POST", f"/api/{token}?{token}=1", {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": f"{token}.invalid"}),
        ("GET", f"/health?{token}=1", {"Host": f"{token}.example", "X-Request-Id": token}),
    ]
    for method, path, headers in probes:
        ctx.request(method, path, auth=False, headers=headers)
    resp, _ = ctx.metrics(fresh=True)
    if resp.status_code != 200:
        return fail(f"/metrics answered {resp.status_code}", "see the components: GET /metrics check")
    hits = [line for line in resp.text.splitlines() if token in line.lower() or "203.0.113.7" in line]
    if hits:
        series = sorted({re.sub(r"\s+\S+$", "", h)[:160] for h in hits})
        return fail(f"{len(series)} series carry a value the validator chose: {series[0]}",
                    "record route templates (http.route), never raw paths, Host headers, ids or "
                    "client addresses; drop the attribute or map it to a bounded set",
                    series=series[:20])
    return ok(f"{len(probes)} requests with random paths, Host and headers added no label value")


@check("metrics", "scrape time of /metrics")
def scrape_time(ctx: Context) -> Verdict:
    timings = []
    for _ in range(3):
        resp, elapsed = ctx.metrics(fresh=True)
        if resp.status_code != 200:
            return fail(f"/metrics answered {resp.status_code}", "see the components: GET /metrics check")
        timings.append(elapsed)
    worst = max(timings)
    text = f"{worst * 1000:.0f} ms (worst of 3), {len(resp.content) / 1024:.0f} KiB"
    if worst > 5.0:
        return fail(text, "a scrape must finish well inside Prometheus' scrape_timeout (10 s): "
                    "reduce series (drop unused instrumentations, fewer buckets)")
    if worst > 1.0:
        return warn(text, "reduce the series count (see performance: /metrics size)")
    return ok(text, seconds=round(worst, 4))


def _target_matches(target: dict, ctx: Context) -> bool:
    url = target.get("scrapeUrl", "")
    hostport = f"{ctx.host}:{ctx.port}"
    return hostport in url or (ctx.loopback and any(
        f"{h}:{ctx.port}" in url for h in ("127.0.0.1", "localhost", "[::1]")))


@check("metrics", "Prometheus scrapes the service")
def prometheus_target(ctx: Context) -> Verdict:
    if not ctx.prometheus:
        return skip("needs --prometheus URL", "pass --prometheus to check scraping")
    resp = ctx.external(ctx.prometheus, "/api/v1/targets", params={"state": "active"})
    if resp.status_code != 200:
        return fail(f"Prometheus /api/v1/targets answered {resp.status_code}", "check the --prometheus URL")
    targets = resp.json()["data"]["activeTargets"]
    mine = [t for t in targets if _target_matches(t, ctx)]
    if mine:
        down = [t for t in mine if t.get("health") != "up"]
        if down:
            return fail(f"target {down[0]['scrapeUrl']} is {down[0].get('health')}: {down[0].get('lastError')}",
                        "fix the scrape (address, metrics token via authorization.credentials_file)")
        return ok(f"{mine[0]['scrapeUrl']} up (job {mine[0]['labels'].get('job')})")
    # Full stack: the collector is scraped, not the app; the series tell whether it arrives.
    if ctx.prom_query("count(sizewise_health_status)"):
        return ok("the service is not scraped directly, but its series arrive (through the collector)")
    return fail(f"no active target for {ctx.url} and no sizewise_* series in Prometheus",
                "add a scrape job for the service's /metrics (prometheus/prometheus.yml, job "
                "sizewise-direct) or export OTLP to the collector that Prometheus scrapes")


@check("metrics", "catalog series in Prometheus")
def prometheus_series(ctx: Context) -> Verdict:
    if not ctx.prometheus:
        return skip("needs --prometheus URL", "pass --prometheus to check the stored series")
    wanted = [s for s in SIGNALS if s.name in ALWAYS]
    regex = "|".join(re.escape(s.sample_name) for s in wanted)
    found = {r["metric"].get("__name__") for r in ctx.prom_query(f'group by (__name__) ({{__name__=~"{regex}"}})')}
    missing = [s for s in wanted if s.sample_name not in found]
    if missing:
        return fail("not in Prometheus: " + ", ".join(s.prom_name for s in missing),
                    "check the scrape job (or the collector's prometheus exporter) and " + _fix_for(missing))
    return ok(f"all {len(wanted)} always-present catalog series stored in Prometheus")

