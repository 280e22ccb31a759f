"""Health monitoring: concurrent, time-bounded checks with history and advice (see docs/health.md).

``model`` is the vocabulary (status, check spec, result), ``checks`` the built-in checks,
``runner`` runs them concurrently within their timeouts, ``history`` keeps transitions and uptime,
``format`` shapes the ``application/health+json`` documents, ``monitor`` (the spec's
``HealthMonitor``) ties them together with a background refresh and gauges, and ``api`` takes a
monitor and returns the ``/livez``, ``/readyz`` and ``/health`` routes.
"""

from sizewise_otel.health.model import CheckResult, CheckSpec, Outcome, Status
from sizewise_otel.health.monitor import HealthMonitor, get_health_monitor, initialize_health_monitor

__all__ = ["CheckResult", "CheckSpec", "HealthMonitor", "Outcome", "Status", "get_health_monitor",
           "initialize_health_monitor"]
