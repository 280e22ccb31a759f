"""Moved to :mod:`sizewise_otel.instruments.http_stats`; kept for importers elsewhere (the demo service)."""

from sizewise_otel.instruments.http_stats import (
    CAPTURED_KEY,
    ErrorSink,
    MonitoringMiddleware,
    RequestStats,
    count_exception,
    count_server_error,
)

__all__ = ["CAPTURED_KEY", "ErrorSink", "MonitoringMiddleware", "RequestStats", "count_exception",
           "count_server_error"]
