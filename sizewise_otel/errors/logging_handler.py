"""Opt-in: a ``logging.Handler`` that captures logged exceptions (``log.exception(...)``).

    logging.getLogger().addHandler(ErrorTrackingHandler(get_error_tracker()))

Records at ERROR or above that carry ``exc_info`` are captured; with ``capture_messages=True``
records without an exception are captured too (grouped by their parameterized message).
The tracker's own loggers are ignored, so a failing store cannot feed itself. The handler is given
its tracker: it never looks the process singleton up, so this module does not import the tracker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sizewise_otel.errors.context import ErrorContext, ErrorSeverity
from sizewise_otel.errors.fingerprint import format_stacktrace
from sizewise_otel.errors.scrub import Scrubber

if TYPE_CHECKING:
    from sizewise_otel.errors.tracker import ErrorTracker

_LEVELS = {logging.CRITICAL: ErrorSeverity.CRITICAL, logging.ERROR: ErrorSeverity.HIGH,
           logging.WARNING: ErrorSeverity.MEDIUM}


class ErrorTrackingHandler(logging.Handler):
    def __init__(self, tracker: ErrorTracker, level: int = logging.ERROR, *,
                 capture_messages: bool = False) -> None:
        super().__init__(level)
        self.tracker = tracker
        self.capture_messages = capture_messages

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


class ScrubbingLogFilter(logging.Filter):
    """Scrubs a record's message and its exception text in place (emails, tokens, secrets, ...).

    Servers log unhandled exceptions themselves (uvicorn's "Exception in ASGI application" with the
    raw message, access lines with raw query strings); this filter makes those lines safe too.
    Formatters reuse ``record.exc_text`` when it is set, so the traceback printed is the scrubbed one.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__("sizewise-scrub")
        self.scrubber = scrubber

    @property
    def version(self) -> tuple[int, int]:
        # format_stacktrace caches rendered frames per (scrub function's owner, its version).
        return id(self.scrubber), self.scrubber.version

    def scrub_lines(self, text: str) -> str:
        """Scrubs ``text`` line by line. Scrubbing it whole would cut it at ``Scrubber.max_string``:
        a server's traceback runs past that, and the frames cut are the innermost, the ones to read."""
        text_of = self.scrubber.text
        return "".join(text_of(line) for line in text.splitlines(keepends=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sizewise_scrubbed", False):
            return True
        try:
            text = self.scrubber.text
            if isinstance(record.msg, str):
                record.msg = text(record.msg)
            else:
                record.msg = text(record.getMessage())
                record.args = None
            if isinstance(record.args, tuple):  # keep the shape: formatters unpack args (uvicorn.access)
                record.args = tuple(text(a) if isinstance(a, str) else a for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: text(v) if isinstance(v, str) else v for k, v in record.args.items()}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                record.exc_text = format_stacktrace(exc, None, self.scrub_lines).rstrip("\n")
            elif record.exc_text:
                record.exc_text = self.scrub_lines(record.exc_text)
            record._sizewise_scrubbed = True
        except Exception:  # a filter must never lose the line
            return True
        return True


SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn", "gunicorn.error",
                  "gunicorn.access", "starlette", "fastapi", "asyncio")


def install_log_scrubbing(scrubber: Scrubber) -> ScrubbingLogFilter:
    """Attach one scrubbing filter to the server loggers and to the root logger's handlers (once)."""
    existing = getattr(logging, "_sizewise_scrub_filter", None)
    filt = existing if isinstance(existing, ScrubbingLogFilter) else ScrubbingLogFilter(scrubber)
    filt.scrubber = scrubber
    logging._sizewise_scrub_filter = filt  # type: ignore[attr-defined]
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in SERVER_LOGGERS]
    for name in SERVER_LOGGERS:
        targets += logging.getLogger(name).handlers
    targets += logging.getLogger().handlers
    for target in targets:
        if filt not in target.filters:
            target.addFilter(filt)
    return filt
