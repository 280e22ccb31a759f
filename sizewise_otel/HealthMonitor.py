"""The spec's module name (`backend.monitoring.HealthMonitor`), kept so its Quick Start runs as written."""

from sizewise_otel.health import *  # noqa: F403
from sizewise_otel.health import __all__ as _all

__all__ = list(_all)
