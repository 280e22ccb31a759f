"""Request statistics and the error hand-off for ``sizewise_error_rate_percent`` and the tracker.

``instrument(app)`` does this inside the HTTP layer (``sizewise_otel.instruments.http_server.HTTPServerTelemetry``
with ``stats=`` and ``errors=``): one middleware and one ``send`` wrapper per request. The
standalone :class:`MonitoringMiddleware` is for zero-code mode (``opentelemetry-instrument``),
where the contrib instrumentor owns the HTTP telemetry and the layer is not installed; both count
and capture the same way: every request counts, an escaped ``Exception`` or a 5xx answer counts as
an error, exceptions are captured and re-raised, a 5xx is captured unless ``CAPTURED_KEY`` is set.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from sizewise_otel.instruments.request import (
    ENTRY_ROOT_PATH,
    NATIVE_TELEMETRY_KEY,
    Scope,
    excluded_urls,
    request_url,
    route_path,
)

# Set on the scope by code that already captured the request's exception (e.g. an exception
# handler answering 503), so the 5xx status is not captured a second time.
CAPTURED_KEY = "sizewise.error_captured"


class ErrorSink(Protocol):
    def capture_request_exception(self, exc: BaseException, scope: Scope) -> str: ...
    def capture_server_error_status(self, scope: Scope, status: int) -> None: ...


class RequestStats:
    """Totals plus a one-minute window of snapshots, for the error-rate gauge."""

    WINDOW_SECONDS = 60.0

    def __init__(self) -> None:
        self.total = 0
        self.errors = 0
        self._snapshots: deque[tuple[float, int, int]] = deque(maxlen=256)  # bounded

    def error_rate_percent(self) -> float:
        now = time.monotonic()
        self._snapshots.append((now, self.total, self.errors))
        while len(self._snapshots) > 1 and now - self._snapshots[0][0] > self.WINDOW_SECONDS:
            self._snapshots.popleft()
        _, total0, errors0 = self._snapshots[0]
        if len(self._snapshots) == 1:
            total0 = errors0 = 0
        requests = self.total - total0
        return 100.0 * (self.errors - errors0) / requests if requests else 0.0


def count_exception(stats: RequestStats, sink: ErrorSink | None, exc: Exception, scope: Scope) -> None:
    """An unhandled exception: one error for the error rate, handed to the tracker."""
    stats.errors += 1
    if sink is not None:
        sink.capture_request_exception(exc, scope)


def count_server_error(stats: RequestStats, sink: ErrorSink | None, scope: Scope, status: int) -> None:
    """A 5xx answer without an escaping exception: counted, captured unless already captured."""
    stats.errors += 1
    if sink is not None and not scope.get(CAPTURED_KEY):
        sink.capture_server_error_status(scope, status)


class MonitoringMiddleware:
    """Counts requests and 5xx, hands exceptions and 5xx to the error tracker (zero-code mode)."""

    def __init__(self, app: Any, stats: RequestStats, sink: ErrorSink | None,
                 excluded: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.stats = stats
        self.sink = sink
        self.excluded = excluded
        self.excluded_urls = excluded_urls()  # the same OTEL_PYTHON_FASTAPI_EXCLUDED_URLS the contrib skips

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or route_path(scope) in self.excluded or (
                self.excluded_urls is not None and self.excluded_urls.url_disabled(request_url(scope))):
            await self.app(scope, receive, send)
            return
        status_holder = [0]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        scope[NATIVE_TELEMETRY_KEY] = None
        scope[ENTRY_ROOT_PATH] = scope.get("root_path", "")
        stats = self.stats
        stats.total += 1
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            count_exception(stats, self.sink, exc, scope)
            raise
        status = status_holder[0]
        if status >= 500:
            count_server_error(stats, self.sink, scope, status)
