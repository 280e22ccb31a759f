import subprocess
import sys

import pytest

from sizewise_otel.settings import Settings, SettingsError, load_settings


def test_defaults_match_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.metrics_collection_interval == 30
    assert s.alert_cooldown_minutes == 15
    assert s.alert_slack_channel == "#sizewise-alerts"
    assert (s.metrics_retention_hours, s.error_retention_hours, s.health_retention_hours) == (168, 168, 168)
    assert (s.otel_traces_sampler_arg, s.traces_sampler_ratio, s.traces_sampler_arg_set) == ("0.1", 0.1, None)


@pytest.mark.parametrize(("raw", "ratio"), [
    ("0.25", 0.25), (" 1 ", 1.0), ("0", 0.0), ("abc", None), ("1.5", None), ("-0.1", None), ("nan", None),
    ("", None),
])
def test_sampler_arg_is_text_and_never_stops_start_up(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                       ratio: float | None) -> None:
    """OTEL_TRACES_SAMPLER_ARG is read as the SDK reads it: text, a ratio only for the ratio samplers
    (which warn about a bad one and go on); an entry-point sampler gets the text itself."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", raw)
    s = load_settings()
    assert (s.otel_traces_sampler_arg, s.traces_sampler_ratio, s.traces_sampler_arg_set) == (raw, ratio, raw)
    assert Settings(otel_traces_sampler_arg=0.5).otel_traces_sampler_arg == "0.5"  # a number, as before


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_COLLECTION_INTERVAL", "5")
    monkeypatch.setenv("ERROR_TRACKING_ENABLED", "false")
    s = load_settings()
    assert s.metrics_collection_interval == 5
    assert s.error_tracking_enabled is False


def test_error_alert_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SIZEWISE_ERROR_ALERT_COOLDOWN_MINUTES", "ALERT_COOLDOWN_MINUTES", "SIZEWISE_ERROR_SPIKE_MIN_EVENTS"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.sizewise_error_alerts, s.sizewise_error_spike_min_events, s.sizewise_error_spike_factor,
            s.sizewise_error_spike_baseline_minutes, s.sizewise_error_alert_max_groups,
            s.sizewise_error_alert_timeout_seconds, s.sizewise_public_url) == (True, 20, 5.0, 10, 10_000, 3.0, "")
    assert s.error_alert_cooldown_minutes == 15  # unset (or empty): ALERT_COOLDOWN_MINUTES
    monkeypatch.setenv("ALERT_COOLDOWN_MINUTES", "40")
    monkeypatch.setenv("SIZEWISE_ERROR_ALERT_COOLDOWN_MINUTES", "")
    assert load_settings().error_alert_cooldown_minutes == 40
    monkeypatch.setenv("SIZEWISE_ERROR_ALERT_COOLDOWN_MINUTES", "5")
    monkeypatch.setenv("SIZEWISE_ERROR_SPIKE_MIN_EVENTS", "3")
    s = load_settings()
    assert (s.error_alert_cooldown_minutes, s.sizewise_error_spike_min_events) == (5, 3)


@pytest.mark.parametrize(("var", "value"), [
    ("METRICS_COLLECTION_INTERVAL", "abc"),
    ("ALERT_COOLDOWN_MINUTES", "-1"),
    ("HEALTH_MONITORING_ENABLED", "perhaps"),
    ("SIZEWISE_ERROR_SPIKE_FACTOR", "0.5"),
    ("SIZEWISE_ERROR_SPIKE_MIN_EVENTS", "0"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert var in message and "\n" not in message
    assert repr(value) in message


def test_cli_stops_with_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sizewise_otel.cli", "demo", "--port", "1"],
                          env={"METRICS_COLLECTION_INTERVAL": "abc", "PATH": ""}, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "METRICS_COLLECTION_INTERVAL" in lines[0] and "integer" in lines[0]


def test_api_keys_parse_and_reject(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nadmin:a-secret\n")
    s = Settings(sizewise_api_keys="viewer:v1", sizewise_api_keys_file=str(keyfile))
    assert s.api_keys() == {"v1": "viewer", "a-secret": "admin"}
    with pytest.raises(SettingsError):
        Settings(sizewise_api_keys="root:x").api_keys()


@pytest.mark.parametrize("env,metrics,traces", [
    ({}, False, False),
    ({"otel_exporter_otlp_endpoint": "http://c:4318"}, True, True),
    ({"otel_exporter_otlp_endpoint": "http://c:4318", "otel_traces_exporter": "none"}, True, False),
    ({"otel_exporter_otlp_metrics_endpoint": "http://p:9090/api/v1/otlp/v1/metrics",
      "otel_traces_exporter": "none"}, True, False),
    ({"otel_exporter_otlp_traces_endpoint": "http://j:4318/v1/traces"}, False, True),
    ({"otel_exporter_otlp_endpoint": "http://c:4318", "otel_metrics_exporter": "none",
      "otel_traces_exporter": "console,otlp"}, False, True),
])
def test_otlp_push_per_signal(env: dict, metrics: bool, traces: bool) -> None:
    s = Settings(**env)
    assert (s.otlp_metrics_enabled, s.otlp_traces_enabled, s.otlp_enabled) == (metrics, traces, metrics or traces)


def test_metrics_straight_to_an_otlp_receiver_and_no_trace_push(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_METRICS_ENDPOINT + OTEL_TRACES_EXPORTER=none: metrics arrive there, no span is sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sizewise_otel.settings import load_settings
    from sizewise_otel.telemetry import Telemetry

    posts: list[str] = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posts.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                       f"http://127.0.0.1:{server.server_address[1]}/api/v1/otlp/v1/metrics")
    # Were traces pushed despite OTEL_TRACES_EXPORTER=none, they would land in the same sink.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    tel = Telemetry(load_settings(otel_traces_sampler="always_on"), set_global=False)
    try:
        tel.meter.create_counter("sizewise.test.pushes").add(1)
        with tel.tracer.start_as_current_span("not exported"):
            pass
        assert tel.meter_provider.force_flush(10_000) and tel.tracer_provider.force_flush(10_000)
        assert posts and set(posts) == {"/api/v1/otlp/v1/metrics"}
    finally:
        tel.meter_provider.shutdown(timeout_millis=1000)
        tel.tracer_provider.shutdown()
        server.shutdown()
