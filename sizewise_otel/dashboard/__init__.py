"""Performance dashboards: one widget catalog -> Grafana JSON, the /dashboard API and page."""

from sizewise_otel.dashboard.service import (
    PerformanceDashboard,
    get_performance_dashboard,
    initialize_performance_dashboard,
)
from sizewise_otel.dashboard.widgets import register_widget

__all__ = ["PerformanceDashboard", "get_performance_dashboard", "initialize_performance_dashboard",
           "register_widget"]
