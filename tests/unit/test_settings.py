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
    assert s.otel_traces_sampler_arg == 0.1


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_COLLECTION_INTERVAL", "5")
    monkeypatch.setenv("ERROR_TRACKING_ENABLED", "false")
    s = load_settings()
    assert s.metrics_collection_interval == 5
    assert s.error_tracking_enabled is False


@pytest.mark.parametrize(("var", "value"), [
    ("METRICS_COLLECTION_INTERVAL", "abc"),
    ("ALERT_COOLDOWN_MINUTES", "-1"),
    ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ("HEALTH_MONITORING_ENABLED", "perhaps"),
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
