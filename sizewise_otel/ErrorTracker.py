"""The spec's module name (`backend.monitoring.ErrorTracker`), kept so its Quick Start runs as written."""

from sizewise_otel.errors import *  # noqa: F403
from sizewise_otel.errors import __all__ as _all

__all__ = list(_all)
