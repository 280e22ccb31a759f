"""Performance dashboards: one widget catalog -> Grafana JSON, the /dashboard API and page.

``widgets`` defines every panel once, with queries as ``expr`` trees that evaluate both as PromQL
and against the embedded ``history``. ``grafana`` renders the Grafana dashboards; ``service`` (the
spec's ``PerformanceDashboard``) answers widgets from the history or, with ``PROMETHEUS_URL``,
through ``promql``; ``api`` takes the service and returns its router.
"""

from sizewise_otel.dashboard.service import (
    PerformanceDashboard,
    get_performance_dashboard,
    initialize_performance_dashboard,
)
from sizewise_otel.dashboard.widgets import register_widget

__all__ = ["PerformanceDashboard", "get_performance_dashboard", "initialize_performance_dashboard",
           "register_widget"]
