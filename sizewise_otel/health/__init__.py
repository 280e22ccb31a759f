"""Health monitoring: concurrent, time-bounded checks with history and advice."""

from sizewise_otel.health.monitor import HealthMonitor, get_health_monitor, initialize_health_monitor

__all__ = ["HealthMonitor", "get_health_monitor", "initialize_health_monitor"]
