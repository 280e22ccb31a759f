"""Performance dashboards: one widget catalog -> Grafana JSON, the /dashboard API and page."""

from sizewise_otel.dashboard.service import (
    PerformanceDashboard,
    get_performance_dashboard,
    initialize_performance_dashboard,
)

__all__ = ["PerformanceDashboard", "get_performance_dashboard", "initialize_performance_dashboard"]
