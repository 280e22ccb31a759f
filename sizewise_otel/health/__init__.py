"""Health monitoring: concurrent, time-bounded checks with history and advice (see docs/health.md)."""

from sizewise_otel.health.model import CheckResult, CheckSpec, Outcome, Status
from sizewise_otel.health.monitor import HealthMonitor, get_health_monitor, initialize_health_monitor

__all__ = ["CheckResult", "CheckSpec", "HealthMonitor", "Outcome", "Status", "get_health_monitor",
           "initialize_health_monitor"]
