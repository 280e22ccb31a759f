"""compose.otlp-direct.yaml: valid, and it runs exactly what tests/integration/test_prometheus_otlp.py runs."""

from __future__ import annotations

import subprocess

import yaml

from tests import stack
from tests.tools import venv_tool


def _override() -> dict:
    return yaml.safe_load(stack.COMPOSE_OTLP_DIRECT.read_text())


def test_the_override_is_valid_compose() -> None:
    binary = venv_tool("check-jsonschema")
    assert binary, "check-jsonschema is a test dependency (pip install .[test])"
    result = subprocess.run([binary, "--builtin-schema", "vendor.compose-spec", str(stack.COMPOSE_OTLP_DIRECT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_gets_the_otlp_config_and_the_receiver_flag() -> None:
    prom = _override()["services"]["prometheus"]
    cfg = stack.PROMETHEUS_OTLP_CONFIG
    assert f"./{cfg.path}:{cfg.target}:ro" in prom["volumes"]
    # The base command plus the receiver flag, nothing else: retention and features stay as compose says.
    assert prom["command"] == [*stack.compose()["services"]["prometheus"]["command"], "--web.enable-otlp-receiver"]
    # Every other mount of the base service is kept (compose merges volumes by target).
    base_targets = {v.split(":")[1] for v in stack.compose()["services"]["prometheus"]["volumes"]}
    assert {v.split(":")[1] for v in prom["volumes"]} == base_targets


def test_the_app_pushes_metrics_to_prometheus_and_spans_to_jaeger() -> None:
    env = _override()["services"]["app"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://prometheus:9090/api/v1/otlp/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].startswith("http://jaeger:4318/")
    assert "jaeger" in stack.compose()["services"]
