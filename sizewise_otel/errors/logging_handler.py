"""Opt-in: a ``logging.Handler`` that captures logged exceptions (``log.exception(...)``).

    logging.getLogger().addHandler(ErrorTrackingHandler())

Records at ERROR or above that carry ``exc_info`` are captured; with ``capture_messages=True``
records without an exception are captured too (grouped by their parameterized message).
The tracker's own loggers are ignored, so a failing store cannot feed itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sizewise_otel.errors.context import ErrorContext, ErrorSeverity

if TYPE_CHECKING:
    from sizewise_otel.errors.tracker import ErrorTracker

_LEVELS = {logging.CRITICAL: ErrorSeverity.CRITICAL, logging.ERROR: ErrorSeverity.HIGH,
           logging.WARNING: ErrorSeverity.MEDIUM}


class ErrorTrackingHandler(logging.Handler):
    def __init__(self, tracker: ErrorTracker | None = None, level: int = logging.ERROR, *,
                 capture_messages: bool = False) -> None:
        super().__init__(level)
        self._tracker = tracker
        self.capture_messages = capture_messages

    @property
    def tracker(self) -> ErrorTracker:
        if self._tracker is None:
            from sizewise_otel.errors.tracker import get_error_tracker

            self._tracker = get_error_tracker()
        return self._tracker

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("sizewise.errors"):
            return
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if exc is None and not self.capture_messages:
                return
            severity = _LEVELS.get(record.levelno, ErrorSeverity.LOW)
            context = ErrorContext(tags={"logger": record.name, "log.level": record.levelname},
                                   extra={"log.message": record.getMessage()})
            if exc is not None:
                self.tracker.capture_error(exc, context, severity, source="log")
            else:
                # Group by the message template (record.msg), not the formatted text.
                self.tracker.capture_error(None, context, severity, [record.name, str(record.msg)],
                                           message=record.getMessage(), source="log")
        except Exception:
            self.handleError(record)
