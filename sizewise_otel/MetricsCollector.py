"""The spec's MetricsCollector (module ``backend.monitoring.MetricsCollector`` there, so its Quick
Start runs as written): a thin face over the OTel providers in ``telemetry``."""

from __future__ import annotations

from prometheus_client import REGISTRY

from sizewise_otel.catalog import CALC_OUTCOME, CALC_TYPE
from sizewise_otel.fastpath import generate_latest
from sizewise_otel.instruments.system import SystemMetrics
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import Telemetry, get_telemetry


class MetricsCollector:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.system = SystemMetrics()
        self._initialized = False

    async def initialize(self) -> None:
        if not self._initialized:
            self._initialized = True
            self.system.register(self.telemetry)

    async def shutdown(self) -> None:
        self.telemetry.meter_provider.force_flush()

    def record_calculation(self, calculation_type: str, seconds: float, outcome: str = "success") -> None:
        self.telemetry.instrument("sizewise.hvac.calculations").add(
            1, {CALC_TYPE: calculation_type, CALC_OUTCOME: outcome})
        self.telemetry.instrument("sizewise.hvac.calculation.duration").record(
            seconds, {CALC_TYPE: calculation_type})

    def prometheus_text(self) -> str:
        return generate_latest(REGISTRY).decode()


_collector: MetricsCollector | None = None


def initialize_metrics_collector(settings: Settings | None = None) -> MetricsCollector:
    global _collector
    if _collector is None:
        _collector = MetricsCollector(get_telemetry(settings))
    return _collector


def get_metrics_collector() -> MetricsCollector:
    return _collector or initialize_metrics_collector()

__all__ = ["MetricsCollector", "get_metrics_collector", "initialize_metrics_collector"]
