"""Error tracking: capture -> scrub -> fingerprint -> group -> store -> OTel."""

from sizewise_otel.errors.tracker import (
    ErrorContext,
    ErrorSeverity,
    ErrorTracker,
    get_error_tracker,
    initialize_error_tracker,
)

__all__ = ["ErrorContext", "ErrorSeverity", "ErrorTracker", "get_error_tracker",
           "initialize_error_tracker"]
