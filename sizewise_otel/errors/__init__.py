"""Error tracking: capture -> scrub -> fingerprint -> group -> store -> OTel.

Modules, one concept each: ``context`` (what an error is), ``scrub`` (what is removed),
``fingerprint`` (what is "the same error"), ``store`` (SQL), ``writer`` (the bounded queue and its
thread), ``alerts`` (new group / regression / spike signals), ``spans`` (OTel), ``api`` (HTTP),
``logging_handler`` (opt-in), ``tracker`` (the pipeline and the process singleton).
"""

from sizewise_otel.errors.context import ErrorContext, ErrorSeverity
from sizewise_otel.errors.logging_handler import ErrorTrackingHandler
from sizewise_otel.errors.scrub import Scrubber
from sizewise_otel.errors.tracker import (
    ErrorTracker,
    get_error_tracker,
    initialize_error_tracker,
    reset_error_tracker,
)

__all__ = ["ErrorContext", "ErrorSeverity", "ErrorTracker", "ErrorTrackingHandler", "Scrubber",
           "get_error_tracker", "initialize_error_tracker", "reset_error_tracker"]
