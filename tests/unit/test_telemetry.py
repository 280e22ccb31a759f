from __future__ import annotations

from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import build_resource, build_sampler, build_views, tier_cached


def test_tier_cache_evaluates_once_per_period(monkeypatch) -> None:
    calls = []
    now = [1000.0]
    monkeypatch.setattr("sizewise_otel.telemetry.time.monotonic", lambda: now[0])
    cached = tier_cached(lambda: calls.append(1) or [(len(calls), {})], 30.0)
    assert cached() == [(1, {})]
    now[0] += 29.9
    assert cached() == [(1, {})]  # a scrape inside the tier reuses the value
    now[0] += 0.2
    assert cached() == [(2, {})]
    assert len(calls) == 2


def test_default_sampler_is_parent_based_ten_percent() -> None:
    sampler = build_sampler(Settings())
    assert isinstance(sampler, ParentBased)
    assert "0.1" in sampler.get_description()
    assert isinstance(build_sampler(Settings(otel_traces_sampler="traceidratio", otel_traces_sampler_arg=0.5)),
                      TraceIdRatioBased)


def test_resource_has_identity_and_pod_attributes(monkeypatch) -> None:
    monkeypatch.setenv("K8S_POD_NAME", "hvac-7d9f-abc")
    monkeypatch.setenv("K8S_NAMESPACE_NAME", "sizewise")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    a = build_resource(Settings(otel_service_name="hvac", deployment_environment="prod")).attributes
    b = build_resource(Settings(otel_service_name="hvac")).attributes
    assert a["service.name"] == "hvac" and a["deployment.environment.name"] == "prod"
    assert a["k8s.pod.name"] == "hvac-7d9f-abc" and a["k8s.namespace.name"] == "sizewise"
    assert a["service.instance.id"] != b["service.instance.id"]  # one per process/provider


def test_otel_resource_attributes_win_over_the_code_defaults(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=payments,deployment.environment.name=staging,"
                                                   "service.instance.id=pod-7,team=hvac")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "calc")
    a = build_resource(Settings(otel_service_name="calc", deployment_environment="prod")).attributes
    assert (a["service.namespace"], a["deployment.environment.name"], a["service.instance.id"], a["team"]) == (
        "payments", "staging", "pod-7", "hvac")
    assert a["service.name"] == "calc"


def test_every_histogram_gets_explicit_buckets_and_an_attribute_allow_list() -> None:
    views = {v._instrument_name: v for v in build_views()}
    http = views["http.server.request.duration"]
    assert "http.route" in http._attribute_keys and "server.address" not in http._attribute_keys
    assert "url.path" not in http._attribute_keys and "user_agent.original" not in http._attribute_keys
    assert views["sizewise.hvac.calculation.duration"]._aggregation._boundaries[0] == 0.0001
