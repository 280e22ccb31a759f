"""sizewise-otel: OpenTelemetry-based observability for the SizeWise HVAC services.

``instrument(app)`` is the one call; the spec's initialize_*/get_* functions are re-exported for
code written against the original monitoring module. Layout: ``instrumentation`` wires an app,
``telemetry`` owns the providers, ``instruments/`` one module per kind of traffic, ``fastpath/``
every private SDK name; the components ``errors/``, ``health/``, ``dashboard/``, ``alerts/`` (the
spec's ``ErrorTracker``/``HealthMonitor``/``PerformanceDashboard`` modules name them, and
``MetricsCollector`` is its own); ``web/`` shared HTTP access control and ``/metrics``,
``runtime/`` background tasks and the heap freeze, ``render/``/``validate/``/``demo/`` the CLI's
commands (see docs/architecture.md).
"""

from sizewise_otel.alerts import AlertRule, AlertSeverity
from sizewise_otel.dashboard import get_performance_dashboard, initialize_performance_dashboard
from sizewise_otel.errors import ErrorContext, ErrorSeverity, get_error_tracker, initialize_error_tracker
from sizewise_otel.health import get_health_monitor, initialize_health_monitor
from sizewise_otel.instrumentation import Instrumentation, instrument
from sizewise_otel.MetricsCollector import get_metrics_collector, initialize_metrics_collector
from sizewise_otel.settings import Settings, SettingsError, get_settings

__all__ = [
    "AlertRule", "AlertSeverity", "ErrorContext", "ErrorSeverity", "Instrumentation", "Settings",
    "SettingsError", "get_error_tracker", "get_health_monitor", "get_metrics_collector",
    "get_performance_dashboard", "get_settings", "initialize_error_tracker", "initialize_health_monitor",
    "initialize_metrics_collector", "initialize_performance_dashboard", "instrument",
]
