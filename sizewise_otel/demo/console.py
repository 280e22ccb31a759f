"""The demo's console: each error the tracker captured prints one structured line, not a traceback.

Under ``demo --load`` the load generator fails on purpose (see ``load.MIX``). uvicorn logs every
exception that reaches it with its traceback ("Exception in ASGI application") although the error
tracker has already captured, scrubbed and grouped it; a new user reads that console as broken.
So, in the CLI demo only (a library leaves its host's logging alone):

- every capture the tracker accepts is reported once, when its writer has prepared it, as one
  ``error captured`` line: error id, group id, route, title, and where to read it (``/errors/<id>``);
- uvicorn's traceback for an exception the tracker accepted is dropped: that line replaces it. An
  exception the tracker did not take (tracking off, queue full, raised outside the instrumented app)
  keeps its traceback.

The tracker has no "captured" hook yet, so the console wraps its writer's ``submit``: the one call
every capture goes through, with the pending capture (its id and, once prepared, its event).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from sizewise_otel.errors.tracker import ErrorTracker

log = structlog.get_logger("sizewise.demo.errors")

# Set on an exception the tracker accepted: its error id.
CAPTURED_ATTR = "__sizewise_error_id__"
SERVER_ERROR_LOGGERS = ("uvicorn.error",)


def captured_error_id(exc: BaseException | None) -> str | None:
    return getattr(exc, CAPTURED_ATTR, None) if exc is not None else None


class CapturedTracebackFilter(logging.Filter):
    """Drops a server's traceback record for an exception the tracker captured; passes all else."""

    def __init__(self) -> None:
        super().__init__("sizewise-demo-captured")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return captured_error_id(exc) is None


def error_line(event: Any) -> dict[str, Any]:
    """The fields of the one line printed for a prepared ``ErrorEvent``."""
    return {"error_id": event.id, "group_id": event.group_id, "route": event.route,
            "method": event.method, "error_type": event.error_type, "title": event.title,
            "details": f"/errors/{event.id}"}


class ErrorConsole:
    """Prints one line per capture of ``tracker`` (on its own thread), hides captured tracebacks."""

    def __init__(self, tracker: ErrorTracker, *, wait_seconds: float = 10.0,
                 emit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.tracker = tracker
        self.wait_seconds = wait_seconds
        self._emit = emit or _log_line
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._filter = CapturedTracebackFilter()
        self._thread: threading.Thread | None = None
        self._original_submit: Callable[[Any], bool] | None = None

    def install(self) -> ErrorConsole:
        writer = self.tracker.writer
        original = writer.submit
        self._original_submit = original

        def submit(item: Any) -> bool:
            exc = getattr(item, "exception", None)  # read first: the writer may free it at once
            accepted = original(item)
            if accepted and hasattr(item, "error_id") and hasattr(item, "event"):
                if exc is not None:
                    with contextlib.suppress(AttributeError, TypeError):  # e.g. __slots__ exceptions
                        setattr(exc, CAPTURED_ATTR, item.error_id)
                self._queue.put(item)
            return accepted

        writer.submit = submit  # type: ignore[method-assign]
        for name in SERVER_ERROR_LOGGERS:
            # First in line: the log scrubber after it need not format a traceback nobody prints.
            logging.getLogger(name).filters.insert(0, self._filter)
        self._thread = threading.Thread(target=self._run, name="sizewise-demo-console", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Report what is still pending (bounded), then undo ``install``."""
        if self._original_submit is not None:
            self.tracker.writer.submit = self._original_submit  # type: ignore[method-assign]
            self._original_submit = None
        for name in SERVER_ERROR_LOGGERS:
            with contextlib.suppress(ValueError):
                logging.getLogger(name).filters.remove(self._filter)
        if self._thread is not None:
            self.wait_seconds = min(self.wait_seconds, timeout)
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            deadline = time.monotonic() + self.wait_seconds
            while item.event is None and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(Exception):  # the console must never take the demo down
                self._report(item)

    def _report(self, item: Any) -> None:
        event = item.event
        if event is None:  # not prepared in time (or preparing it failed: counted as dropped)
            self._emit("error captured, not grouped yet",
                       {"error_id": item.error_id, "error_type": item.error_type,
                        "details": f"/errors/{item.error_id}"})
        else:
            self._emit("error captured", error_line(event))


def _log_line(message: str, fields: dict[str, Any]) -> None:
    log.error(message, **fields)


def banner(base: str, settings: Any, load_lines: list[str] | None, *, errors_tracked: bool = True) -> str:
    """What a new user needs at start: what runs, where to look, with which credentials."""
    rows = [("dashboard", f"{base}/dashboard", "live overview")]
    if errors_tracked:
        rows += [("errors", f"{base}/errors/groups", "captured errors by group; one error: /errors/<error_id>"),
                 ("summary", f"{base}/errors/summary", "error counts")]
    else:
        rows.append(("errors", "not tracked (ERROR_TRACKING_ENABLED=false): tracebacks print here", ""))
    rows += [
        ("health", f"{base}/health", ""),
        ("metrics", f"{base}/metrics", "Prometheus text format"),
    ]
    width = max(len(url) for _, url, note in rows if note)
    out = [f"SizeWise HVAC demo on {base}"]
    out += [f"  {name:<10}{url:<{width}}  {note}".rstrip() for name, url, note in rows]
    out += [f"  {'auth':<10}{line}" if i == 0 else f"  {'':<10}{line}"
            for i, line in enumerate(_auth_lines(base, settings))]
    if load_lines is None:
        out.append(f"  {'load':<10}none (start with --load for realistic traffic, errors included)")
    else:
        out += [f"  {'load' if i == 0 else '':<10}{line}" for i, line in enumerate(load_lines)]
    if load_lines is not None and errors_tracked:
        out.append(f"  {'':<10}each captured error prints one \"error captured\" line (error id, group, "
                   "route), not a traceback")
    return "\n".join(out)


def _auth_lines(base: str, settings: Any) -> list[str]:
    keys: dict[str, str] = settings.api_keys()  # key -> role
    lines: list[str] = []
    if not keys:
        lines.append("none: the monitoring endpoints are open (set SIZEWISE_API_KEYS=viewer:KEY,admin:KEY "
                     "to require keys)")
    else:
        from sizewise_otel.web.auth import key_id

        source = " or ".join(n for n, v in (("SIZEWISE_API_KEYS", settings.sizewise_api_keys),
                                            ("SIZEWISE_API_KEYS_FILE", settings.sizewise_api_keys_file)) if v)
        ids = ", ".join(f"{role} {key_id(key)}" for key, role in sorted(keys.items(), key=lambda kv: kv[1]))
        lines += [f"send 'Authorization: Bearer <key>' with a viewer or admin key from {source}",
                  f"(configured: {ids}; key ids, keys are never printed)",
                  f"curl -H 'Authorization: Bearer <viewer key>' {base}/errors/groups",
                  f"the dashboard page takes the key in its URL: {base}/dashboard#key=<viewer key>"]
    if getattr(settings, "sizewise_metrics_token", ""):
        lines.append("/metrics needs 'Authorization: Bearer <SIZEWISE_METRICS_TOKEN>'")
    return lines
