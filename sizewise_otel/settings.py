"""One typed settings object, read from the environment.

Every variable of the spec's Configuration section, plus the standard ``OTEL_*`` ones the SDK
reads itself. A bad value stops start-up with one line naming the variable and what it expects.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SAMPLER_RATIO = 0.1  # of new traces, with parentbased_traceidratio (the SDK's own default is 1.0)


class SettingsError(ValueError):
    """A configuration value is wrong; the message is one line meant for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- the spec's Configuration section -------------------------------------------------
    metrics_collection_enabled: bool = True
    metrics_collection_interval: int = Field(30, ge=1, le=3600)
    error_tracking_enabled: bool = True
    performance_dashboard_enabled: bool = True
    health_monitoring_enabled: bool = True
    alert_cooldown_minutes: int = Field(15, ge=0, le=7 * 24 * 60)
    alert_webhook_url: str = ""
    alert_webhook_secret: str = ""
    alert_slack_webhook_url: str = ""
    alert_slack_channel: str = "#sizewise-alerts"
    alert_allow_http_webhooks: bool = False
    metrics_retention_hours: int = Field(168, ge=1, le=24 * 90)
    error_retention_hours: int = Field(168, ge=1, le=24 * 90)
    health_retention_hours: int = Field(168, ge=1, le=24 * 90)

    # --- the service and its dependencies -------------------------------------------------
    service_version: str = "0.1.0"
    deployment_environment: str = "development"
    database_url: str = "sqlite:///sizewise.db"
    redis_url: str = ""
    materials_service_url: str = ""
    prometheus_url: str = ""
    error_store_url: str = ""  # empty: the DATABASE_URL database, or a SQLite file beside it
    error_queue_size: int = Field(10_000, ge=10, le=1_000_000)
    error_samples_per_group: int = Field(10, ge=1, le=1000)
    error_scrub_ip_addresses: bool = True
    error_capture_locals: bool = False
    # Error alerts (the tracker's new-group, regression and spike signals, docs/errors.md): always one
    # log line each; with SIZEWISE_ERROR_ALERTS on (default) also the evaluator's channels (Slack,
    # webhook). A spike: at least MIN_EVENTS of one group in the last minute and FACTOR times that
    # group's mean per minute over the BASELINE_MINUTES before. Cooldown per (signal, group); empty ->
    # ALERT_COOLDOWN_MINUTES. MAX_GROUPS bounds the groups remembered for spikes and cooldowns.
    sizewise_error_alerts: bool = True
    sizewise_error_spike_min_events: int = Field(20, ge=1, le=1_000_000)
    sizewise_error_spike_factor: float = Field(5.0, ge=1.0, le=1000.0)
    sizewise_error_spike_baseline_minutes: int = Field(10, ge=1, le=24 * 60)
    sizewise_error_alert_cooldown_minutes: int | None = Field(None, ge=0, le=7 * 24 * 60)
    sizewise_error_alert_max_groups: int = Field(10_000, ge=10, le=1_000_000)
    sizewise_error_alert_timeout_seconds: float = Field(3.0, gt=0, le=60)
    # Where the service is reached (e.g. https://hvac.example.com): the base of the links in alerts.
    sizewise_public_url: str = ""

    # --- health thresholds ----------------------------------------------------------------
    health_check_timeout_seconds: float = Field(2.0, gt=0, le=60)
    health_cache_ttl_seconds: float = Field(5.0, ge=0, le=600)
    cpu_warning_percent: float = Field(80.0, gt=0, le=100)
    cpu_critical_percent: float = Field(95.0, gt=0, le=100)
    memory_warning_percent: float = Field(85.0, gt=0, le=100)
    memory_critical_percent: float = Field(95.0, gt=0, le=100)
    disk_warning_percent: float = Field(85.0, gt=0, le=100)
    disk_critical_percent: float = Field(95.0, gt=0, le=100)

    # --- access control -------------------------------------------------------------------
    sizewise_api_keys: str = ""
    sizewise_api_keys_file: str = ""
    sizewise_metrics_token: str = ""

    # --- tracing ---------------------------------------------------------------------------
    # SQL and Redis CLIENT spans without a parent span (start-up, health probes, background jobs)
    # are single-span traces: off unless asked for. db.client.operation.duration counts them anyway.
    sizewise_db_root_spans: bool = False

    # --- runtime ---------------------------------------------------------------------------
    sizewise_gc_freeze: bool = True  # gc.freeze() after start-up (sizewise_otel/runtime/heap.py)

    # --- logging --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- the standard OTel variables (the SDK reads them too; kept here so they are checked) -
    otel_service_name: str = "sizewise-hvac"
    otel_resource_attributes: str = ""
    otel_exporter_otlp_endpoint: str = ""
    # Per-signal endpoints (full URLs, used as given) and exporters ("otlp" or "none"), so metrics can go
    # straight into Prometheus 3's OTLP receiver while traces go elsewhere or nowhere.
    otel_exporter_otlp_metrics_endpoint: str = ""
    otel_exporter_otlp_traces_endpoint: str = ""
    otel_metrics_exporter: str = "otlp"
    otel_traces_exporter: str = "otlp"
    otel_exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = "http/protobuf"
    otel_traces_sampler: str = "parentbased_traceidratio"
    # Text, as the SDK reads it: a ratio for the ratio samplers (see ``traces_sampler_ratio``: a bad one
    # is warned about and replaced, never a reason not to start), anything for an entry-point sampler.
    otel_traces_sampler_arg: str = str(DEFAULT_SAMPLER_RATIO)
    otel_metric_export_interval: int = Field(10_000, ge=100)
    otel_semconv_stability_opt_in: str = "http,database"

    @field_validator("sizewise_error_alert_cooldown_minutes", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("otel_traces_sampler_arg", mode="before")
    @classmethod
    def _arg_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @property
    def traces_sampler_ratio(self) -> float | None:
        """OTEL_TRACES_SAMPLER_ARG as a ratio in [0, 1]; None when it is not one (the ratio samplers
        then warn and use :data:`DEFAULT_SAMPLER_RATIO`)."""
        try:
            ratio = float(self.otel_traces_sampler_arg)
        except ValueError:
            return None
        return ratio if 0.0 <= ratio <= 1.0 else None  # NaN fails both comparisons

    @property
    def traces_sampler_arg_set(self) -> str | None:
        """The argument as given (environment, .env or keyword), None when it was not: what an
        ``opentelemetry_traces_sampler`` entry point receives, as from the SDK's configurator."""
        return self.otel_traces_sampler_arg if "otel_traces_sampler_arg" in self.model_fields_set else None

    @property
    def error_alert_cooldown_minutes(self) -> int:
        """SIZEWISE_ERROR_ALERT_COOLDOWN_MINUTES, else ALERT_COOLDOWN_MINUTES."""
        own = self.sizewise_error_alert_cooldown_minutes
        return self.alert_cooldown_minutes if own is None else own

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def otlp_metrics_enabled(self) -> bool:
        return _exports_otlp(self.otel_metrics_exporter) and bool(
            self.otel_exporter_otlp_metrics_endpoint or self.otel_exporter_otlp_endpoint)

    @property
    def otlp_traces_enabled(self) -> bool:
        return _exports_otlp(self.otel_traces_exporter) and bool(
            self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint)

    @property
    def otlp_enabled(self) -> bool:
        """Some signal is pushed over OTLP."""
        return self.otlp_metrics_enabled or self.otlp_traces_enabled

    def api_keys(self) -> dict[str, str]:
        """Map of key -> role from SIZEWISE_API_KEYS and SIZEWISE_API_KEYS_FILE."""
        lines: list[str] = [p for p in self.sizewise_api_keys.split(",") if p.strip()]
        if self.sizewise_api_keys_file:
            lines += Path(self.sizewise_api_keys_file).read_text().splitlines()
        keys: dict[str, str] = {}
        for raw in lines:
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            role, sep, key = entry.partition(":")
            if not sep or role.strip() not in ("viewer", "admin") or not key.strip():
                raise SettingsError(
                    "SIZEWISE_API_KEYS: expected 'role:key' entries with role viewer or admin"
                )
            keys[key.strip()] = role.strip()
        return keys


def _describe(error: dict) -> str:
    field = ".".join(str(p) for p in error.get("loc", ())) or "?"
    value = error.get("input")
    return f"{field.upper()}: {error.get('msg', 'invalid value')}, got {value!r}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError with one line on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"invalid configuration: {_describe(first)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def ensure_semconv_opt_in(settings: Settings) -> None:
    """Stable HTTP/DB semantic conventions, unless the operator chose otherwise.

    The OTel instrumentations read this variable once, so it must be set before they load.
    """
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", settings.otel_semconv_stability_opt_in)


def _exports_otlp(exporters: str) -> bool:
    """OTEL_*_EXPORTER is a comma-separated list; "none" (or nothing but it) turns the signal's push off."""
    names = {n.strip().lower() for n in exporters.split(",") if n.strip()}
    return "otlp" in names
