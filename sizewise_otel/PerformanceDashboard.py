"""The spec's module name (`backend.monitoring.PerformanceDashboard`), kept so its Quick Start runs as written."""

from sizewise_otel.dashboard import *  # noqa: F403
from sizewise_otel.dashboard import __all__ as _all

__all__ = list(_all)
