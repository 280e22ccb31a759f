"""The spec's module name (`backend.monitoring.MetricsCollector`), kept so its Quick Start runs as written."""

from sizewise_otel.metrics_collector import *  # noqa: F403
from sizewise_otel.metrics_collector import __all__ as _all

__all__ = list(_all)
