"""A lean ASGI layer for inbound HTTP: the stable-semconv server metrics and a SERVER span.

It records exactly what the OTel ASGI/FastAPI instrumentation records for SizeWise's catalog:

- ``http.server.request.duration`` (s) with ``http.request.method`` (normalised, unknown ->
  ``_OTHER``), ``http.route`` (the matched template, absent for unmatched paths),
  ``http.response.status_code``, ``url.scheme``, ``error.type`` (5xx, or an exception escaping
  before the response was complete: not a failing background task's) and ``network.protocol.version``;
- ``http.server.active_requests`` with ``http.request.method`` and ``url.scheme``;
- a SERVER span with the semconv attributes, W3C context propagation through the global
  propagator (traceparent, baggage; malformed headers are ignored), the SDK sampler deciding
  (:class:`sizewise_otel.spangate.ServerSpanGate` builds a non-sampled request's span the way the
  SDK would, without its sampler objects).

What it leaves out is where the stock instrumentation's time goes (see docs/performance.md):
no internal ``receive``/``send`` spans, no route matching of its own (the route template is read
from ``scope["route"]`` after the router has matched), no per-request URL rebuilding or regex
exclusion, attribute dicts built once per (method, route, status) and reused, span attributes only
computed when the sampler says the span records, and no header parsing unless a header the
propagator reads is present.

The metrics are recorded under the same instrumentation scope as the contrib instrumentor, so
``instrument(app)`` and zero-code mode (``opentelemetry-instrument``) expose identical series.

The same layer also feeds SizeWise's request statistics (``RequestStats``, for the error-rate
gauge) and hands unhandled exceptions and 5xx answers to the error tracker, so one middleware and
one ``send`` wrapper serve both (``sizewise_otel.instruments.http_stats.MonitoringMiddleware`` remains only for
zero-code mode, where the contrib instrumentor owns the HTTP telemetry).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import StatusCode, TracerProvider
from starlette.middleware import Middleware

from sizewise_otel.fastpath import (
    NO_EXEMPLARS,
    BoundedCache,
    LeanPoint,
    ServerSpanGate,
    contrib_scope,
    detach,
    enabled,
    enter_span,
    instrumented_by_contrib,
    lean_histogram,
    send_in_context,
    set_span_attributes,
)
from sizewise_otel.fastpath import enabled as fastpath_enabled
from sizewise_otel.fastpath.fastapi_native import native_telemetry_config
from sizewise_otel.instruments.http_stats import (
    ErrorSink,
    MonitoringMiddleware,
    RequestStats,
    count_exception,
    count_server_error,
)
from sizewise_otel.instruments.registry import Undo
from sizewise_otel.instruments.request import (
    ENTRY_ROOT_PATH,
    NATIVE_TELEMETRY_KEY,
    Scope,
    error_type,
    excluded_urls,
    excluded_urls_setting,
    header_capture,
    header_value,
    request_url,
    route_path,
    route_template,
)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"
# RFC 9110 + PATCH; the same default list as opentelemetry-util-http's ``sanitize_method``.
DEFAULT_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
                                   "TRACE"})
# Attribute dicts are cached per distinct combination; past this many the layer still works but
# builds fresh dicts, so a pathological app can never grow the cache without bound.
MAX_CACHED_ATTRIBUTE_SETS = 4096


def known_methods() -> frozenset[str]:
    """The methods kept as-is (``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` overrides the default)."""
    configured = os.environ.get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "").strip()
    if not configured:
        return DEFAULT_KNOWN_METHODS
    return frozenset(m.strip().upper() for m in configured.split(",") if m.strip())


def _scope_identity(fastapi: bool) -> tuple[str, str, str | None]:
    """Name, version and schema URL of the contrib instrumentor this layer stands in for."""
    return contrib_scope("fastapi" if fastapi else "asgi", "http")


class _DictGetter(Getter[dict[str, list[str]]]):
    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


_GETTER = _DictGetter()


class HTTPServerTelemetry:
    """ASGI middleware recording the semconv HTTP server metrics and (when sampled) a SERVER span.

    With ``stats`` it also counts requests and 5xx answers (unhandled exceptions included) for the
    error-rate gauge, and with ``errors`` it hands unhandled exceptions (re-raised afterwards) and
    5xx answers to the error tracker, while the request's span is still current and open, unless
    the scope carries ``CAPTURED_KEY`` (already captured by an exception handler). That is what
    ``MonitoringMiddleware`` does, without a second middleware and ``send`` wrapper.
    """

    def __init__(self, app: ASGIApp, *, tracer_provider: TracerProvider | None = None,
                 meter_provider: MeterProvider | None = None, excluded_paths: Iterable[str] = (),
                 fastapi: bool = True, lean: bool = True, stats: RequestStats | None = None,
                 errors: ErrorSink | None = None) -> None:
        self.app = app
        self.stats = stats
        self.errors = errors
        identity = _scope_identity(fastapi)
        name, version, schema_url = identity
        meter_provider = meter_provider or _global_meter_provider()
        meter = meter_provider.get_meter(name, version, schema_url=schema_url)
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = tracer_provider.get_tracer(name, version, schema_url=schema_url)
        # Non-sampled requests get their non-recording span without the SDK's sampler machinery.
        self.gate = ServerSpanGate(tracer_provider, self.tracer)
        description = "Duration of HTTP server requests."
        self.lean = lean_histogram(meter_provider, DURATION, "s", description, duration_buckets(),
                                   identity) if lean and enabled() else None  # type: ignore[arg-type]
        self.duration = None if self.lean is not None else meter.create_histogram(
            DURATION, unit="s", description=description)
        # Which requests may carry an exemplar: with the default trace-based filter only those whose
        # span records (the sampled ones), so the non-sampled path pays nothing for exemplars.
        policy = self.lean.policy if self.lean is not None else NO_EXEMPLARS
        self._exemplars_sampled = policy.offers(True) and not policy.offers(False)
        self._exemplars_all = policy.offers(False)
        # In-flight counts live in plain integer cells, one per (method, scheme), and are reported
        # by an observable up-down counter at collection time: two SDK measurements a request
        # (each one validates, copies and hashes its attributes) become two integer updates. The
        # exported series is the same non-monotonic sum the synchronous instrument produces.
        self._active_cells: BoundedCache[tuple[str, str], tuple[list[int], dict[str, str]]] = \
            BoundedCache(MAX_CACHED_ATTRIBUTE_SETS)
        self.active = meter.create_observable_up_down_counter(
            ACTIVE, callbacks=[self._observe_active], unit="{request}",
            description="Number of active HTTP server requests.")
        self.excluded = frozenset(excluded_paths)
        self.excluded_urls = excluded_urls()  # OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, None when unset
        self.capture = header_capture()  # OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*, None when unset
        self.known_methods = known_methods()
        # Which request headers the propagator reads (traceparent, tracestate, baggage, ...), as
        # lower-case bytes: a request carrying none of them skips extraction entirely.
        self._propagator_fields = frozenset(
            f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields)
        self._base: BoundedCache[tuple[str, str, str], tuple[list[int], dict[str, str]]] = \
            BoundedCache(MAX_CACHED_ATTRIBUTE_SETS)
        self._final: BoundedCache[tuple[Any, ...], tuple[dict[str, Any], LeanPoint | None]] = \
            BoundedCache(MAX_CACHED_ATTRIBUTE_SETS)

    # --- cached attribute sets ----------------------------------------------------------------
    def _observe_active(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(cell[0], attrs) for cell, attrs in list(self._active_cells.values())]

    def _base_attributes(self, method: str, scheme: str, version: str) -> tuple[list[int], dict[str, str]]:
        """The in-flight cell for (method, scheme) and the request's attribute dict (cached)."""
        key = (method, scheme, version)
        found = self._base.get(key)
        if found is None:
            cell = self._active_cells.get((method, scheme))
            if cell is None:
                cell = self._active_cells.put((method, scheme),
                                              ([0], {"http.request.method": method, "url.scheme": scheme}))
            request = dict(cell[1])
            if version:
                request["network.protocol.version"] = version
            found = self._base.put(key, (cell[0], request))
        return found

    def _final_attributes(self, key: tuple[Any, ...], request: dict[str, str], route: str | None,
                          status: int, error: str | None) -> tuple[dict[str, Any], LeanPoint | None]:
        """The duration's attribute dict for a finished request, and its lean-histogram point."""
        found = self._final.get(key)
        if found is None:
            attrs = dict(request)
            if route is not None:
                attrs["http.route"] = route
            if status:
                attrs["http.response.status_code"] = status
            if error is not None:
                attrs["error.type"] = error
            found = self._final.put(key, (attrs, self.lean.point(key, attrs) if self.lean is not None else None))
        return found

    def _parent_context(self, headers: Iterable[tuple[bytes, bytes]]) -> otel_context.Context | None:
        fields = self._propagator_fields
        carrier: dict[str, list[str]] | None = None
        for name, raw_value in headers:  # ASGI header names are lower-case already
            if name in fields:
                if carrier is None:
                    carrier = {}
                carrier.setdefault(header_value(name), []).append(header_value(raw_value))
        if carrier is None:
            return None
        if "baggage" in carrier and len(carrier["baggage"]) > 1:
            carrier["baggage"] = [",".join(carrier["baggage"])]  # the propagator reads one value
        try:
            return propagate.extract(carrier, getter=_GETTER)
        except Exception:  # a hostile header must never fail the request
            return None

    # --- the middleware -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.excluded or (
                self.excluded_urls is not None and self.excluded_urls.url_disabled(request_url(scope))):
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        raw_method = scope.get("method", "")
        method = raw_method if raw_method in self.known_methods else "_OTHER"
        scheme = scope.get("scheme", "http")
        version = scope.get("http_version", "")
        base = self._base.get((method, scheme, version))
        active, request_attrs = base if base is not None else self._base_attributes(method, scheme, version)
        root_path = scope.get("root_path", "")
        scope[ENTRY_ROOT_PATH] = root_path  # later readers (the error tracker) can tell a mount's prefix

        parent = self._parent_context(scope.get("headers", ()))
        span_name = method if method != "_OTHER" else "HTTP"
        span = self.gate.start(span_name, parent)
        recording = span.is_recording()
        if recording:
            _set_request_span_attributes(span, scope, request_attrs, raw_method, method)
            if self.capture is not None:
                send = self.capture.wrap(span, scope, send)
        outer, token = enter_span(span, parent)

        status = 0
        completed = False  # the response's last body chunk went out

        def send_wrapper(message: Message) -> Awaitable[None]:
            # A plain function handing back the server's awaitable: no coroutine of its own per message.
            nonlocal status, completed
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                completed = True
                # Under the context from before the request: uvicorn arms its keep-alive timer in this
                # send, and asyncio's call_later copies the current context into the timer, which keeps
                # it (cancelled) until the loop purges its timer heap. Under the request's context every
                # request's span would outlive the request and keep the garbage collector busy
                # (hundreds of collections a second at a few thousand requests). What the app runs
                # after this send (a background task) is still under the request's span.
                return send_in_context(outer, send, message)
            return send(message)

        active[0] += 1
        scope[NATIVE_TELEMETRY_KEY] = None  # a mounted FastAPI app must not record this request again
        stats = self.stats
        if stats is not None:
            stats.total += 1
        error: str | None = None
        exception: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            exception = exc
            # After a complete answer (a failing BackgroundTask) the request itself succeeded: the
            # series keep its status without error.type, as the contrib's do; the tracker still gets it.
            error = None if completed and status < 500 else error_type(exc)
            if not status:
                status = 500  # ServerErrorMiddleware, outside this layer, answers it
            if stats is not None and isinstance(exc, Exception):  # not cancellation / exit
                count_exception(stats, self.errors, exc, scope)
            raise
        finally:
            if error is None and status >= 500:
                error = str(status)
                if stats is not None and exception is None:
                    count_server_error(stats, self.errors, scope, status)
            route = route_template(scope, root_path)
            active[0] -= 1
            key = (method, scheme, version, route, status, error)
            final = self._final.get(key)
            attrs, point = final if final is not None else self._final_attributes(key, request_attrs, route,
                                                                                  status, error)
            try:
                if point is not None:
                    if (recording and self._exemplars_sampled) or self._exemplars_all:
                        self.lean.offer(point, perf_counter() - started, span, attrs)  # type: ignore[union-attr]
                    else:
                        self.lean.record(point, perf_counter() - started)  # type: ignore[union-attr]
                else:  # recorded while the span is current, so exemplars can point at the trace
                    self.duration.record(perf_counter() - started, attrs)  # type: ignore[union-attr]
                if recording:
                    _finish_span(span, attrs, method, route, status, exception)
            finally:
                detach(token)


def _set_request_span_attributes(span: trace.Span, scope: Scope, request_attrs: dict[str, str],
                                 raw_method: str, method: str) -> None:
    attrs: dict[str, Any] = dict(request_attrs)
    attrs["url.path"] = scope.get("path", "")
    query = scope.get("query_string", b"")
    if query:
        attrs["url.query"] = header_value(query)
    if raw_method != method:
        attrs["http.request.method_original"] = raw_method
    server = scope.get("server")
    if server:
        attrs["server.address"] = server[0]
        if server[1] is not None:
            attrs["server.port"] = server[1]
    client = scope.get("client")
    if client:
        attrs["client.address"] = client[0]
        if client[1] is not None:
            attrs["client.port"] = client[1]
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            attrs["user_agent.original"] = header_value(value)
        elif name == b"host":
            authority = header_value(value)
            host, sep, port = authority.rpartition(":")
            if sep and host and port.isdigit():
                attrs["server.address"] = host
                attrs["server.port"] = int(port)
            else:
                attrs["server.address"] = authority
    set_span_attributes(span, attrs)  # plain values: stored without the SDK cleaning them again


def _finish_span(span: trace.Span, attrs: dict[str, Any], method: str, route: str | None, status: int,
                 exception: BaseException | None) -> None:
    # Method, scheme and protocol were set at the start; add what the response decided, in one
    # call (each ``set_attribute`` takes the span's lock and checks that it has not ended).
    response: dict[str, Any] = {"http.route": route} if route is not None else {}
    if status:
        response["http.response.status_code"] = status
    if "error.type" in attrs:
        response["error.type"] = attrs["error.type"]
    if response:
        set_span_attributes(span, response)
    if route is not None:
        span.update_name(f"{method if method != '_OTHER' else 'HTTP'} {route}")
    if exception is not None:
        # The semconv exception event, without the deprecated exception.escaped the SDK's
        # record_exception still adds (an exception that ends the span has escaped it).
        span.add_event("exception", {
            "exception.type": error_type(exception),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
        })
        span.set_status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}")
    elif status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()


def duration_buckets() -> tuple[float, ...]:
    """The explicit buckets for ``http.server.request.duration`` (as the SDK view has them)."""
    from sizewise_otel.instruments.buckets import histogram_buckets

    return histogram_buckets(DURATION)


def _global_meter_provider() -> MeterProvider:
    from opentelemetry import metrics

    return metrics.get_meter_provider()


def disable_native_fastapi_telemetry(app: Any) -> Callable[[], None]:
    """FastAPI >= 0.165 records HTTP metrics and spans itself whenever global OTel providers exist
    (and defers only to the contrib middleware). With this layer in place that would record every
    request twice, plus internal operation spans: switch the native layer off for this app.
    Returns what switches it back as it was."""
    config = native_telemetry_config(app)
    if config is None:
        return lambda: None
    keys = ("tracing", "metrics", "logs", "operation_spans")
    saved = {k: config[k] for k in keys if k in config}
    config.update(dict.fromkeys(keys, False))

    def restore() -> None:
        for k in keys:
            config.pop(k, None)
        config.update(saved)

    return restore


# --- wiring into an app (instrument()) ----------------------------------------------------------

# Probe and scrape endpoints are not traffic: they stay out of the HTTP metrics and spans.
UNMEASURED_PATHS = frozenset({"/metrics", "/livez", "/readyz"})


def _add_middleware(app: Any, undo: Undo, cls: Any, **kwargs: Any) -> None:
    """``app.add_middleware``, with its removal registered."""
    before = list(app.user_middleware)
    if getattr(app, "middleware_stack", None) is None:
        app.add_middleware(cls, **kwargs)
    else:  # the app already served (e.g. instrumented again after uninstrument()): rebuild its stack
        app.user_middleware.insert(0, Middleware(cls, **kwargs))
        app.middleware_stack = None
    added = [m for m in app.user_middleware if not any(m is b for b in before)]

    def remove() -> None:
        app.user_middleware[:] = [m for m in app.user_middleware if not any(m is a for a in added)]
        app.middleware_stack = None  # rebuilt on the next request, without it

    undo.add(f"middleware {cls.__name__}", remove)


def instrument_http_server(app: Any, telemetry: Any, undo: Undo | None = None,
                            fast: bool | None = None) -> None:
    """The HTTP server telemetry, request/5xx counting and the error hand-off, once per app.

    Fast path: the lean semconv HTTP layer (sizewise_otel.instruments.http_server; see docs/performance.md),
    which also counts requests/5xx for the error-rate gauge and hands exceptions and 5xx answers
    to the error tracker: one middleware does both. FastAPI's own native telemetry is switched off
    for this app so no request is recorded twice. Public path, and zero-code mode (the contrib
    instrumentor already wrapped the app): the contrib FastAPI/ASGI instrumentation records the
    HTTP telemetry and ``MonitoringMiddleware`` does the counting and hand-off.
    """
    from fastapi import FastAPI

    undo = undo if undo is not None else Undo()
    fast = fastpath_enabled() if fast is None else fast
    if not undo.claim(app, "http.server"):
        return  # an earlier call already did it
    undo.add("middleware stack", lambda: setattr(app, "middleware_stack", None))  # runs last
    handle = getattr(getattr(app, "state", None), "sizewise", None)
    stats = getattr(handle, "stats", None)
    tracker = getattr(handle, "tracker", None)
    is_fastapi = isinstance(app, FastAPI)
    if not instrumented_by_contrib(app) and not fast:
        _instrument_http_server_contrib(app, telemetry, undo, is_fastapi)
    if instrumented_by_contrib(app):
        if stats is not None:
            _add_middleware(app, undo, MonitoringMiddleware, stats=stats, sink=tracker, excluded=UNMEASURED_PATHS)
            _move_inside_otel_middleware(app)
        return
    if is_fastapi:
        undo.add("fastapi native telemetry", disable_native_fastapi_telemetry(app))
    _add_middleware(app, undo, HTTPServerTelemetry, tracer_provider=telemetry.tracer_provider,
                    meter_provider=telemetry.meter_provider, excluded_paths=UNMEASURED_PATHS,
                    fastapi=is_fastapi, stats=stats, errors=tracker)


def _move_inside_otel_middleware(app: Any) -> None:
    """Put ``MonitoringMiddleware`` just inside the contrib OTel middleware when that is a user middleware.

    Contrib before 0.55 adds ``OpenTelemetryMiddleware`` with ``add_middleware`` (later ones wrap the
    whole stack): ours, added after it, would sit outside the server span and record errors on no span.
    """
    stack = app.user_middleware
    otel = next((i for i, m in enumerate(stack) if getattr(m.cls, "__name__", "") == "OpenTelemetryMiddleware"), None)
    ours = next((i for i, m in enumerate(stack) if m.cls is MonitoringMiddleware), None)
    if otel is not None and ours is not None and ours < otel:
        stack.insert(otel, stack.pop(ours))  # after the pop, index ``otel`` is just inside it
        app.middleware_stack = None


def _move_otel_middleware_outermost(app: Any, undo: Undo) -> None:
    """Contrib before 0.55 adds ``OpenTelemetryMiddleware`` as a user middleware, inside Starlette's
    ``ServerErrorMiddleware``: an unhandled exception then leaves the request's duration without its 500
    status. Later releases wrap the whole built stack instead; do the same here (public Starlette API).
    """
    stack = app.user_middleware
    entry = next((m for m in stack if getattr(m.cls, "__name__", "") == "OpenTelemetryMiddleware"), None)
    if entry is None:
        return  # the contrib already wraps the whole stack
    stack.remove(entry)
    build = app.build_middleware_stack

    def build_wrapped() -> Any:
        return entry.cls(build(), *entry.args, **entry.kwargs)

    app.build_middleware_stack = build_wrapped
    app.middleware_stack = None

    def restore() -> None:
        if app.__dict__.get("build_middleware_stack") is build_wrapped:
            del app.build_middleware_stack
        app.middleware_stack = None

    undo.add("otel middleware outermost", restore)


def _instrument_http_server_contrib(app: Any, telemetry: Any, undo: Undo, is_fastapi: bool) -> None:
    """The public path: opentelemetry-instrumentation-fastapi (or -asgi for a Starlette app)."""
    # The paths we never measure, plus the user's OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (an explicit
    # excluded_urls argument stops the contrib from reading the variable itself).
    excluded = ",".join([*(f"{p}$" for p in sorted(UNMEASURED_PATHS)), *filter(None, [excluded_urls_setting()])])
    if is_fastapi:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Contrib before 0.55 calls add_middleware, which refuses an app that already served (instrumented
        # again after uninstrument()): drop the built stack, Starlette rebuilds it on the next request.
        app.middleware_stack = None
        FastAPIInstrumentor.instrument_app(app, tracer_provider=telemetry.tracer_provider,
                                          meter_provider=telemetry.meter_provider, excluded_urls=excluded,
                                          exclude_spans=["receive", "send"])
        undo.add("fastapi instrumentor", lambda: FastAPIInstrumentor.uninstrument_app(app))
        _move_otel_middleware_outermost(app, undo)
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.util.http import parse_excluded_urls

    # Parsed here: the ASGI middleware before 0.55 takes only an ExcludeList (a string fails every request).
    _add_middleware(app, undo, OpenTelemetryMiddleware, tracer_provider=telemetry.tracer_provider,
                    meter_provider=telemetry.meter_provider, excluded_urls=parse_excluded_urls(excluded),
                    exclude_spans=["receive", "send"])
