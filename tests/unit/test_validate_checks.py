"""Individual validate checks against canned HTTP answers (httpx.MockTransport): no servers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from sizewise_otel.validate import (
    artifacts,
    checks_alerting,
    checks_errors,
    checks_health,
    checks_metrics,
    checks_readiness,
)
from sizewise_otel.validate.context import Context
from sizewise_otel.validate.expect import judge
from sizewise_otel.validate.local import ServiceView, is_loopback_host, settings_from_env
from sizewise_otel.validate.model import Status
from sizewise_otel.validate.registry import CATEGORIES, all_checks, run_checks

Handler = Callable[[httpx.Request], httpx.Response]


def ctx_with(handler: Handler, url: str = "http://127.0.0.1:9", **kw: object) -> Context:
    ctx = Context(url, client=httpx.Client(transport=httpx.MockTransport(handler)), **kw)  # type: ignore[arg-type]
    ctx._view = ServiceView()
    ctx.settle_seconds = 0.0
    return ctx


def test_every_category_has_checks_and_names_are_unique() -> None:
    checks = all_checks()
    assert {c.category for c in checks} == set(CATEGORIES)
    names = [(c.category, c.name) for c in checks]
    assert len(names) == len(set(names))


def test_judge_names_the_fix_for_auth_and_missing_routes() -> None:
    req = httpx.Request("GET", "http://x/errors/summary")
    assert judge(httpx.Response(200, json={}, request=req)).status is Status.PASS
    v = judge(httpx.Response(401, json={}, request=req))
    assert v.status is Status.FAIL and "--api-key" in v.fix
    v = judge(httpx.Response(404, json={}, request=req), disabled_fix="enable it")
    assert v.status is Status.FAIL and v.fix == "enable it"
    v = judge(httpx.Response(200, text="hi", request=req))
    assert v.status is Status.FAIL and "content type" in v.reason


def test_client_chosen_label_values_are_detected() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/metrics":
            # A badly instrumented service: the raw path becomes a label value.
            paths = [r.url.path for r in seen if r.url.path != "/metrics"]
            lines = [f'http_requests_total{{path="{p}"}} 1' for p in paths]
            return httpx.Response(200, text="\n".join(lines) + "\n", headers={"content-type": "text/plain"})
        return httpx.Response(404, json={"detail": "nope"})

    ctx = ctx_with(handler)
    v = checks_metrics.client_chosen_values(ctx)
    assert v.status is Status.FAIL
    assert "route templates" in v.fix
    assert any(ctx.token in r.headers.get("host", "") for r in seen)  # a random Host was sent


def test_bounded_labels_pass() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(200, text='http_server_request_duration_seconds_count{http_route="/x"} 1\n',
                                  headers={"content-type": "text/plain"})
        return httpx.Response(404, json={})

    assert checks_metrics.client_chosen_values(ctx_with(handler)).status is Status.PASS


def test_missing_catalog_series_names_the_setting() -> None:
    text = ('http_server_request_duration_seconds_bucket{le="1"} 1\n'
            'http_server_active_requests 0\n'
            'sizewise_health_status{sizewise_health_check="a",sizewise_health_state="healthy"} 1\n'
            'sizewise_health_check_duration_seconds{sizewise_health_check="a"} 0\n'
            'sizewise_errors_total{sizewise_error_severity="low"} 1\n')

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=text, headers={"content-type": "text/plain"})

    v = checks_metrics.catalog_series(ctx_with(handler))
    assert v.status is Status.FAIL
    assert "sizewise_cpu_usage_percent" in v.reason
    assert "METRICS_COLLECTION_ENABLED" in v.fix


def test_scrub_check_finds_an_unscrubbed_secret() -> None:
    event = {"event": {"id": "e1", "group_id": "g1", "message": "login failed password=hunter22 for bob"}}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/errors/diagnostics":
            return httpx.Response(200, json={"error_id": "e1", "stored": True, "group_id": "g1"})
        if path == "/errors/groups":
            return httpx.Response(200, json={"groups": [{"group_id": "g1"}]})
        if path == "/errors/groups/g1":
            return httpx.Response(200, json={"sample_event_ids": ["e1"]})
        if path == "/errors/e1":
            return httpx.Response(200, json=event)
        return httpx.Response(404, json={})

    v = checks_errors.scrubbed(ctx_with(handler))
    assert v.status is Status.FAIL and "password" in v.reason and "scrub" in v.fix
    event["event"]["message"] = "login failed password=[Filtered] for [email]"
    assert checks_errors.scrubbed(ctx_with(handler)).status is Status.PASS


def test_alertmanager_slack_receiver_must_be_routed() -> None:
    config = {"route": {"receiver": "hook", "routes": [{"receiver": "slack"}]},
              "receivers": [{"name": "hook", "webhook_configs": [{"url": "http://h"}]},
                            {"name": "slack", "slack_configs": [{"api_url_file": "/run/secrets/s"}]}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"config": {"original": json.dumps(config)},
                                         "cluster": {"status": "disabled"}})

    ctx = ctx_with(handler, alertmanager="http://127.0.0.1:9093")
    assert checks_alerting.am_loaded(ctx).status is Status.PASS
    assert checks_alerting.am_slack(ctx).status is Status.PASS
    config["route"]["routes"] = []
    ctx = ctx_with(handler, alertmanager="http://127.0.0.1:9093")
    v = checks_alerting.am_slack(ctx)
    assert v.status is Status.FAIL and "route" in v.fix


def test_stack_checks_skip_without_urls() -> None:
    ctx = ctx_with(lambda r: httpx.Response(500))
    assert checks_alerting.rules_loaded(ctx).status is Status.SKIP
    assert checks_alerting.am_slack(ctx).status is Status.SKIP


def test_unreachable_service_fails_fast_with_a_fix() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    ctx = ctx_with(handler)
    results = run_checks(ctx)
    assert len(calls) == 1  # after the first refusal nothing else waits on the network
    scored = [r for r in results if r.status is not Status.SKIP]
    assert scored and all(r.status is Status.FAIL and r.fix for r in scored)
    assert "unreachable" in scored[1].reason


@pytest.mark.parametrize(("expr", "expected"), [
    ('rate(x{job=~"$job", instance=~"$instance"}[$__rate_interval])', 'rate(x{job=~".+", instance=~".+"}[30s])'),
    ('sum(x{job="$job"})', 'sum(x{job=~".+"})'),
    ('increase(y[$__range])', "increase(y[5m])"),
])
def test_grafana_variables_are_substituted(expr: str, expected: str) -> None:
    assert artifacts.substitute(expr) == expected


def test_checked_in_or_rendered_artifacts_have_queries_and_rules() -> None:
    boards, _ = artifacts.dashboards()
    queries = [q for b in boards.values() for q in artifacts.panel_queries(b)]
    assert queries and all("$" not in artifacts.substitute(e) for _, e in queries)
    files, _ = artifacts.rule_files()
    assert artifacts.rule_names(files)


def test_service_settings_come_from_the_given_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    s = settings_from_env({"LOG_LEVEL": "warning", "SIZEWISE_API_KEYS": "admin:k1", "PATH": "/x"})
    assert s.log_level == "WARNING"
    assert s.api_keys() == {"k1": "admin"}
    assert settings_from_env({}).log_level == "INFO"


def test_loopback_detection() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost") and is_loopback_host("::1")
    assert not is_loopback_host("10.0.0.5") and not is_loopback_host("example.com")


def open_service(request: httpx.Request) -> httpx.Response:
    """A service without keys: every anonymous read succeeds."""
    return httpx.Response(200, json={"total_events": 0})


@pytest.mark.parametrize(("addresses", "status"), [
    (["0.0.0.0"], Status.FAIL), (["::"], Status.FAIL), (["127.0.0.1"], Status.PASS), ([], Status.WARN),
])
def test_bind_address_without_keys(addresses: list[str], status: Status) -> None:
    ctx = ctx_with(open_service)
    ctx._view = ServiceView(listen_addresses=addresses)
    assert checks_readiness.bind_address(ctx).status is status
    if status is Status.FAIL:
        assert "127.0.0.1" in checks_readiness.bind_address(ctx).fix


def test_keys_configured_depends_on_exposure() -> None:
    ctx = ctx_with(open_service)
    ctx._view = ServiceView(listen_addresses=["127.0.0.1"])
    assert checks_readiness.keys_configured(ctx).status is Status.WARN
    ctx = ctx_with(open_service)
    ctx._view = ServiceView(listen_addresses=["0.0.0.0"])
    v = checks_readiness.keys_configured(ctx)
    assert v.status is Status.FAIL and "SIZEWISE_API_KEYS" in v.fix
    ctx = ctx_with(lambda r: httpx.Response(401, json={"detail": "no"}))
    assert checks_readiness.keys_configured(ctx).status is Status.PASS


@pytest.mark.parametrize(("env", "check", "status"), [
    ({"LOG_LEVEL": "DEBUG"}, "debug_off", Status.FAIL),
    ({}, "debug_off", Status.PASS),
    ({"OTEL_TRACES_SAMPLER": "always_on"}, "sampling", Status.WARN),
    ({"OTEL_TRACES_SAMPLER_ARG": "0.05"}, "sampling", Status.PASS),
    ({"ERROR_RETENTION_HOURS": "2"}, "retention", Status.WARN),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel.example.com:4318"}, "otlp_tls", Status.FAIL),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, "otlp_tls", Status.WARN),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com:4318"}, "otlp_tls", Status.PASS),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp_tls", Status.PASS),
])
def test_local_settings_checks(env: dict[str, str], check: str, status: Status) -> None:
    ctx = ctx_with(open_service)
    ctx._view = ServiceView(settings=settings_from_env(env), source="test")
    assert getattr(checks_readiness, check)(ctx).status is status


def test_local_settings_checks_skip_for_a_remote_service() -> None:
    ctx = ctx_with(lambda r: httpx.Response(404, json={}), url="http://sizewise.example.com")
    for fn in (checks_readiness.debug_off, checks_readiness.sampling, checks_readiness.otlp_tls):
        assert fn(ctx).status is Status.SKIP


def test_each_health_check_becomes_a_row_with_its_advice() -> None:
    doc = {"status": "warn", "overall_status": "warning", "summary": {"total": 2}, "checks": {
        "database:responseTime": [{"check": "database", "status": "pass", "time": "t", "health": "healthy",
                                   "impact": "healthy", "output": "SELECT 1 in 1 ms"}],
        "redis:responseTime": [{"check": "redis", "status": "warn", "time": "t", "health": "critical",
                                "impact": "warning", "output": "connection refused",
                                "advice": "check REDIS_URL"}]}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=doc, headers={"content-type": "application/health+json"})

    rows = checks_health.each_check(ctx_with(handler))
    assert [(r.name, r.status) for r in rows] == [("health: database", Status.PASS),
                                                 ("health: redis", Status.FAIL)]
    assert rows[1].fix == "check REDIS_URL" and "impact on the service: warning" in rows[1].reason
