"""HTTP client traffic: the contrib httpx instrumentor, process-wide (its metrics are the catalog's
``http.client.request.duration``), installed once and removed with the last live handle.

Contrib releases before 0.55 trace httpx but record no metrics: there :class:`_DurationRecorder`
wraps httpx's transports (public httpx API) and records ``http.client.request.duration`` with the
stable attributes the later contrib records, so the same series exist on every supported release.
Releases that do not read ``OTEL_PYTHON_HTTPX_EXCLUDED_URLS`` (before 0.60) get the same wrapper for it:
a request to an excluded URL runs under ``suppress_http_instrumentation()``, so the contrib makes no
span and nobody records its duration, as later releases do.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sizewise_otel.instruments.registry import MARKS, PROCESS

_SCOPE = "opentelemetry.instrumentation.httpx"  # the scope the contrib records under
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def _contrib_records_duration() -> bool:
    from opentelemetry.instrumentation import httpx as contrib

    return hasattr(contrib, "HTTP_CLIENT_REQUEST_DURATION")


def _contrib_excludes_urls() -> bool:
    """Whether the installed httpx instrumentor reads OTEL_PYTHON_HTTPX_EXCLUDED_URLS itself."""
    from opentelemetry.instrumentation import httpx as contrib

    return hasattr(contrib, "get_excluded_urls")


class _DurationRecorder:
    """``http.client.request.duration`` around httpx's sync and async transports (``record``), and the
    OTEL_PYTHON_HTTPX_EXCLUDED_URLS exclusion for a contrib that lacks it (``exclude``)."""

    def __init__(self, meter_provider: Any, *, record: bool = True, exclude: bool = True) -> None:
        from opentelemetry.util.http import get_excluded_urls

        self.histogram = meter_provider.get_meter(_SCOPE).create_histogram(
            "http.client.request.duration", unit="s", description="Duration of HTTP client requests.") \
            if record else None
        self.excluded = get_excluded_urls("HTTPX")
        self.exclude = exclude
        self.originals: dict[Any, tuple[str, Any]] = {}

    def is_excluded(self, request: Any) -> bool:
        return bool(self.excluded and self.excluded.url_disabled(str(request.url)))

    def attributes(self, request: Any, response: Any, error: BaseException | None) -> dict[str, Any]:
        url = request.url
        method = request.method.upper()
        attrs: dict[str, Any] = {"http.request.method": method if method in _METHODS else "_OTHER",
                                 "url.scheme": url.scheme}
        if url.host:
            attrs["server.address"] = url.host
        port = url.port or {"http": 80, "https": 443}.get(url.scheme)
        if port:
            attrs["server.port"] = port
        if response is not None:
            attrs["http.response.status_code"] = response.status_code
            version = response.extensions.get("http_version", b"")
            if isinstance(version, bytes) and version.startswith(b"HTTP/"):
                attrs["network.protocol.version"] = version[5:].decode()
            if response.status_code >= 400:
                attrs["error.type"] = str(response.status_code)
        if error is not None:
            attrs["error.type"] = type(error).__qualname__
        return attrs

    def install(self) -> None:
        import httpx
        from opentelemetry.instrumentation.utils import suppress_http_instrumentation

        recorder = self
        sync_original = httpx.HTTPTransport.handle_request
        async_original = httpx.AsyncHTTPTransport.handle_async_request

        def handle_request(transport: Any, request: Any) -> Any:
            if recorder.is_excluded(request):
                if not recorder.exclude:
                    return sync_original(transport, request)
                with suppress_http_instrumentation():
                    return sync_original(transport, request)
            if recorder.histogram is None:
                return sync_original(transport, request)
            start, response, error = time.perf_counter(), None, None
            try:
                response = sync_original(transport, request)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                recorder.histogram.record(time.perf_counter() - start,  # type: ignore[union-attr]
                                          recorder.attributes(request, response, error))

        async def handle_async_request(transport: Any, request: Any) -> Any:
            if recorder.is_excluded(request):
                if not recorder.exclude:
                    return await async_original(transport, request)
                with suppress_http_instrumentation():
                    return await async_original(transport, request)
            if recorder.histogram is None:
                return await async_original(transport, request)
            start, response, error = time.perf_counter(), None, None
            try:
                response = await async_original(transport, request)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                recorder.histogram.record(time.perf_counter() - start,  # type: ignore[union-attr]
                                          recorder.attributes(request, response, error))

        self.originals = {httpx.HTTPTransport: ("handle_request", sync_original),
                          httpx.AsyncHTTPTransport: ("handle_async_request", async_original)}
        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for cls, (name, original) in self.originals.items():
            setattr(cls, name, original)
        self.originals = {}


def instrument_httpx(telemetry: Any) -> None:
    """The contrib httpx instrumentor, process-wide, once (undone with the last live handle)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    if MARKS.claim(PROCESS, "httpx"):
        HTTPXClientInstrumentor().instrument(tracer_provider=telemetry.tracer_provider,
                                             meter_provider=telemetry.meter_provider)
        MARKS.claim(PROCESS, "httpx.ours")
        record, exclude = not _contrib_records_duration(), not _contrib_excludes_urls()
        if record or exclude:
            recorder = _DurationRecorder(telemetry.meter_provider, record=record, exclude=exclude)
            recorder.install()
            MARKS.claim(PROCESS, "httpx.duration", recorder)


def uninstrument_httpx() -> None:
    """Remove the httpx instrumentation if this package installed it (not zero-code mode's)."""
    if not MARKS.marked(PROCESS, "httpx.ours"):
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    recorder = MARKS.get(PROCESS, "httpx.duration")
    if recorder is not None:  # ours wraps the contrib's: unwrapped first
        recorder.uninstall()
        MARKS.release(PROCESS, "httpx.duration")
    with contextlib.suppress(Exception):
        HTTPXClientInstrumentor().uninstrument()
    MARKS.release(PROCESS, "httpx.ours")
    MARKS.release(PROCESS, "httpx")
