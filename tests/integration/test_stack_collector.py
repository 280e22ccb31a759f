"""The collector config users run (collector/config.yaml), validated and run by the built collector.

A real ``sizewise_otel`` Telemetry exports OTLP to it; the series must come out of the collector's
Prometheus exporter with job/instance taken from the resource, exemplars on the histogram
buckets, and the spans must reach the OTLP trace backend (a gRPC sink standing in for Jaeger).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import servers, stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sink() -> Iterator[stack.TraceSink]:
    s = stack.TraceSink()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def collector(sink: stack.TraceSink) -> Iterator[stack.RunningCollector]:
    running = stack.start_collector(sink.endpoint)
    yield running
    running.stop()


def _validate(config: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    binary = servers.need_collector()
    return subprocess.run([binary, "validate", f"--config={config}"], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_checked_in_config_validates() -> None:
    # As compose runs it (defaults for the ${env:...} values) and with every variable set.
    for env in ({}, {"TRACES_OTLP_ENDPOINT": "127.0.0.1:4317", "DEPLOYMENT_ENVIRONMENT": "ci"}):
        result = _validate(str(stack.ROOT / stack.COLLECTOR_CONFIG.path), env)
        assert result.returncode == 0, result.stderr


def test_builder_manifest_has_exactly_the_components_the_config_uses() -> None:
    config = stack.load_yaml(stack.COLLECTOR_CONFIG.path)
    manifest = stack.load_yaml("collector/builder-config.yaml")
    binary = servers.need_collector()
    listing = subprocess.run([binary, "components"], capture_output=True, text=True, check=True)
    built = stack.yaml.safe_load(listing.stdout)
    for kind in ("receivers", "processors", "exporters", "extensions"):
        used = {name.split("/")[0] for name in config.get(kind, {})}
        available = {c["name"] for c in built.get(kind) or []}
        assert used == available, f"{kind}: config uses {sorted(used)}, build has {sorted(available)}"
        assert len(manifest[kind]) == len(used), kind
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces"}
    for pipeline in pipelines.values():
        assert pipeline["processors"][0] == "memory_limiter"
        assert pipeline["processors"][-1] == "batch"
    exporter = config["exporters"]["prometheus"]
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is False
    assert exporter["enable_open_metrics"] is True
    assert config["service"]["extensions"] == ["health_check"]


def test_test_copy_differs_only_in_addresses(sink: stack.TraceSink) -> None:
    ports = {role: 40000 + i for i, role in enumerate(stack.COLLECTOR_PORTS)}
    copy = stack.collector_test_config(ports)
    original = stack.load_yaml(stack.COLLECTOR_CONFIG.path)
    assert copy["service"]["pipelines"] == original["service"]["pipelines"]
    assert copy["processors"] == original["processors"]
    dumped = stack.yaml.safe_dump(copy)
    assert "0.0.0.0" not in dumped
    workdir = servers.tempdir("otelcol-validate")
    try:
        path = stack.write_yaml(copy, workdir / "config.yaml")
        result = _validate(str(path), {"TRACES_OTLP_ENDPOINT": sink.endpoint})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert result.returncode == 0, result.stderr


def _families(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_telemetry_exports_through_the_collector(
    collector: stack.RunningCollector, sink: stack.TraceSink, protocol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sizewise_otel.settings import load_settings
    from sizewise_otel.telemetry import Telemetry

    endpoint = collector.otlp_http if protocol == "http/protobuf" else collector.otlp_grpc
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    settings = load_settings(otel_exporter_otlp_endpoint=endpoint, otel_exporter_otlp_protocol=protocol,
                             otel_metric_export_interval=60_000, otel_traces_sampler="always_on")
    tel = Telemetry(settings, set_global=False)
    instance = tel.resource.attributes["service.instance.id"]
    span_name = f"stack-test-{protocol}"
    try:
        with tel.tracer.start_as_current_span(span_name):
            tel.instrument("sizewise.hvac.calculations").add(
                3, {"calculation_type": "round_duct", "outcome": "success"})
            tel.instrument("sizewise.hvac.calculation.duration").record(
                0.004, {"calculation_type": "round_duct"})
        # One export, by force_flush: exemplars are those recorded since the previous export (the
        # SDK's reservoirs reset at each collection), and the exporter shows the latest export only.
        tel.meter_provider.force_flush()
        tel.tracer_provider.force_flush()

        def exported() -> bool:
            samples = _families(httpx.get(collector.exporter_url, timeout=2).text)
            return any(s.labels.get("instance") == instance and s.value == 3
                       for s in samples.get("sizewise_hvac_calculations", []) if s.name.endswith("_total"))

        servers.wait_for(exported, 20, "calculations counter on the collector's exporter")
        families = _families(httpx.get(collector.exporter_url, timeout=2).text)
        mine = [s for s in families["sizewise_hvac_calculations"] if s.labels.get("instance") == instance]
        labels = mine[0].labels
        # job and instance come from the resource (resource_to_telemetry_conversion off) ...
        assert labels["job"] == "sizewise/sizewise-hvac"
        assert labels["calculation_type"] == "round_duct" and labels["outcome"] == "success"
        assert "service_version" not in labels
        # ... and the rest of the resource, with the collector's resource processing, in target_info.
        info = [s for s in families["target_info"] if s.labels.get("instance") == instance]
        assert info and info[0].labels["deployment_environment_name"] == "development"
        buckets = [s for s in families["sizewise_hvac_calculation_duration_seconds"]
                   if s.labels.get("instance") == instance and s.name.endswith("_count")]
        assert buckets and buckets[0].value == 1

        # Exemplars: OpenMetrics exposition carries the trace id of the span the value was recorded in.
        om = httpx.get(collector.exporter_url, timeout=2,
                       headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        bucket_lines = [line for line in om.text.splitlines()
                        if line.startswith("sizewise_hvac_calculation_duration_seconds_bucket")
                        and instance in line and "trace_id" in line]
        assert bucket_lines, "no exemplar on the histogram buckets"

        # Traces reach the OTLP backend (Jaeger in compose), with the resource processing applied.
        def traced() -> bool:
            return any(span.name == span_name for _, span in sink.spans())

        servers.wait_for(traced, 20, "span at the OTLP trace backend")
        attrs = next(a for a, span in sink.spans() if span.name == span_name)
        assert attrs["service.name"] == "sizewise-hvac"
        assert attrs["service.instance.id"] == instance
        assert attrs["deployment.environment.name"] == "development"
    finally:
        tel.shutdown()

    # The collector's own metrics, on the telemetry port Prometheus scrapes as otel-collector-internal.
    own = httpx.get(collector.telemetry_url, timeout=2).text
    assert "otelcol_receiver_accepted_metric_points" in own
    assert "otelcol_exporter_sent_spans" in own
    assert httpx.get(collector.health_url, timeout=2).status_code == 200
