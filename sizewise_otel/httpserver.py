"""A lean ASGI layer for inbound HTTP: the stable-semconv server metrics and a SERVER span.

It records exactly what the OTel ASGI/FastAPI instrumentation records for SizeWise's catalog:

- ``http.server.request.duration`` (s) with ``http.request.method`` (normalised, unknown ->
  ``_OTHER``), ``http.route`` (the matched template, absent for unmatched paths),
  ``http.response.status_code``, ``url.scheme``, ``error.type`` (5xx or an escaped exception) and
  ``network.protocol.version``;
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
one ``send`` wrapper serve both (``sizewise_otel.asgi.MonitoringMiddleware`` remains only for
zero-code mode, where the contrib instrumentor owns the HTTP telemetry).
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from time import perf_counter, time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import StatusCode, TracerProvider

from sizewise_otel.asgi import ErrorSink, RequestStats, count_exception, count_server_error
from sizewise_otel.spangate import ServerSpanGate, attach_span, detach

Scope = MutableMapping[str, Any]
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
_SCOPE_NAMES = {True: "opentelemetry.instrumentation.fastapi", False: "opentelemetry.instrumentation.asgi"}
# Exemplar filter of the meter provider, as the lean histogram applies it (the SDK's default is
# trace-based: only measurements made while a sampled span is current carry an exemplar).
EXEMPLARS_OFF, EXEMPLARS_TRACE_BASED, EXEMPLARS_ALWAYS, EXEMPLARS_CUSTOM = 0, 1, 2, 3


def known_methods() -> frozenset[str]:
    """The methods kept as-is (``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` overrides the default)."""
    configured = os.environ.get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "").strip()
    if not configured:
        return DEFAULT_KNOWN_METHODS
    return frozenset(m.strip().upper() for m in configured.split(",") if m.strip())


def _scope_identity(fastapi: bool) -> tuple[str, str, str]:
    """Name, version and schema URL of the contrib instrumentor this layer stands in for."""
    from opentelemetry.instrumentation._semconv import _get_schema_url, _StabilityMode

    if fastapi:
        from opentelemetry.instrumentation.fastapi.version import __version__
    else:
        from opentelemetry.instrumentation.asgi.version import __version__
    return _SCOPE_NAMES[fastapi], __version__, _get_schema_url(_StabilityMode.HTTP)


class _DictGetter(Getter[dict[str, list[str]]]):
    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


_GETTER = _DictGetter()


def error_type_of(exc: BaseException) -> str:
    """``error.type`` for an exception: its class name, qualified outside builtins (bounded by code)."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def route_template(scope: Scope, root_path: str) -> str | None:
    """The matched route's template, read after routing; ``None`` when nothing matched.

    Routes inside a ``Mount`` carry paths relative to it, so the mount prefix (what the router
    appended to ``root_path``) is put back in front. A mount whose app is not a router (static
    files) is reported as ``<prefix>/{path}``.
    """
    route = scope.get("route")
    if route is None:
        return None
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    current_root = scope.get("root_path", "")
    prefix = current_root[len(root_path):] if current_root != root_path and current_root.startswith(root_path) \
        else ""
    if hasattr(route, "routes") and hasattr(route, "app") and not hasattr(route, "endpoint"):
        # A Mount that handled the request itself: its own matched path is already in the prefix.
        return (prefix or path).rstrip("/") + "/{path}"
    return prefix + path if prefix else path


class _Point:
    """One attribute set's cumulative histogram state.

    ``exemplars`` is ``None`` until the first exemplar, then one slot per bucket (the
    AlignedHistogramBucketExemplarReservoir's layout): the latest offered measurement in that bucket
    as ``(seq, value, time_unix_nano, span_id, trace_id, measurement_attributes)``. Fixed size, so
    memory is bounded by buckets x attribute sets whatever the traffic.
    """

    __slots__ = ("attributes", "count", "counts", "exemplars", "max", "min", "sum")

    def __init__(self, attributes: dict[str, Any], buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: list[tuple[Any, ...] | None] | None = None

    def add(self, index: int, value: float) -> None:
        """One measurement in bucket ``index`` (the caller holds the histogram's lock)."""
        self.counts[index] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


class LeanHistogram:
    """``http.server.request.duration`` aggregated in the layer, exported by the SDK's readers.

    An SDK ``Histogram.record`` validates, copies, filters and hashes the attribute dict on every
    call: on the 2-core reference machine that is the largest single cost of an instrumented
    request (about 20 us against 5 us for everything else the layer does). Here the attribute set
    is resolved once per (method, route, status) and a measurement is a bisect and four additions
    under a lock. At collection time each registered reader gets a standard cumulative
    ``Histogram`` metric (explicit buckets, count, sum, min, max) under the layer's scope, merged
    into what the SDK collected, so the Prometheus and OTLP exporters see exactly what the SDK
    instrument would have produced.

    Exemplars follow the provider's exemplar filter (trace-based by default) and the SDK's
    ``AlignedHistogramBucketExemplarReservoir``: per data point and bucket, the latest measurement
    offered since the reader's previous collection, with the trace and span id of the request's
    span. Each reader has its own cursor (a sequence number), as each SDK reader has its own
    reservoir: a collection by one reader does not hide exemplars from another. Offering one is a
    few extra writes under the same lock, and only on requests whose span is sampled.

    It needs the SDK MeterProvider and cumulative histogram temporality on every reader; when
    either is missing, :func:`lean_histogram` returns ``None`` and the layer records through the
    SDK instrument instead.
    """

    def __init__(self, name: str, unit: str, description: str, bounds: Iterable[float],
                 scope: Any, resource: Any, cardinality_limit: int = 2000, exemplar_filter: Any = None) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(float(b) for b in bounds)
        self.scope = scope
        self.resource = resource
        self.cardinality_limit = cardinality_limit
        self.start_time = time_ns()
        self._points: dict[Any, _Point] = {}
        self._lock = threading.Lock()
        self.exemplar_filter = exemplar_filter
        self.exemplar_mode = _exemplar_mode(exemplar_filter)
        self._seq = 0  # exemplars offered so far; readers remember where they last collected
        self._cursors: dict[int, int] = {}

    def point(self, key: Any, attributes: dict[str, Any]) -> _Point:
        found = self._points.get(key)
        if found is None:
            with self._lock:
                found = self._points.get(key)
                if found is None:
                    if len(self._points) >= self.cardinality_limit - 1:
                        key, attributes = "__overflow__", {"otel.metric.overflow": True}
                        found = self._points.get(key)
                    if found is None:
                        found = self._points[key] = _Point(dict(attributes), len(self.bounds) + 1)
        return found

    def record(self, point: _Point, value: float) -> None:
        index = bisect_left(self.bounds, value)
        with self._lock:
            point.add(index, value)

    def record_counting(self, point: _Point, value: float, cell: list[int]) -> None:
        """:meth:`record`, and ``cell[0] += 1`` under the same lock (one acquisition for both)."""
        index = bisect_left(self.bounds, value)
        with self._lock:
            cell[0] += 1
            point.add(index, value)

    def record_with_exemplar(self, point: _Point, value: float, span_id: int | None, trace_id: int | None,
                             attributes: dict[str, Any] | None) -> None:
        """:meth:`record`, and the measurement kept as its bucket's exemplar (the latest wins)."""
        index = bisect_left(self.bounds, value)
        now = time_ns()
        with self._lock:
            point.add(index, value)
            self._seq += 1
            slots = point.exemplars
            if slots is None:
                slots = point.exemplars = [None] * len(point.counts)
            slots[index] = (self._seq, value, now, span_id, trace_id, attributes)

    def offer(self, point: _Point, value: float, span: trace.Span, attributes: dict[str, Any]) -> None:
        """Record ``value``, with an exemplar when the provider's exemplar filter takes it.

        ``span`` is the request's span, current in the active context (what the SDK's filter and
        reservoir read the trace and span id from).
        """
        mode = self.exemplar_mode
        if mode == EXEMPLARS_OFF:
            self.record(point, value)
            return
        ctx = span.get_span_context()
        if mode == EXEMPLARS_TRACE_BASED:
            take = ctx.trace_flags.sampled
        elif mode == EXEMPLARS_ALWAYS:
            take = True
        else:
            try:
                take = bool(self.exemplar_filter.should_sample(value, time_ns(), attributes,
                                                               otel_context.get_current()))
            except Exception:  # a broken custom filter must never fail the request
                take = False
        if not take:
            self.record(point, value)
        elif ctx.is_valid:
            self.record_with_exemplar(point, value, ctx.span_id, ctx.trace_id, attributes)
        else:
            self.record_with_exemplar(point, value, None, None, attributes)

    def metric(self, reader: Any = None) -> Any:
        """The current cumulative state as an SDK ``Metric`` (``None`` before the first request).

        ``reader`` identifies the collecting reader: its data points carry the exemplars offered
        since that reader's previous collection (the SDK reservoir's collect-and-reset).
        """
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            HistogramDataPoint,
            Metric,
        )
        from opentelemetry.sdk.metrics.export import Histogram as HistogramData

        now = time_ns()
        reader_key = id(reader)
        with self._lock:
            cursor = self._cursors.get(reader_key, 0)
            self._cursors[reader_key] = self._seq
            live = [(p, p.count, p.sum, list(p.counts), p.min, p.max,
                     [e for e in p.exemplars if e is not None and e[0] > cursor] if p.exemplars else None)
                    for p in self._points.values() if p.count]
        if not live:
            return None
        points = [HistogramDataPoint(
            attributes=p.attributes, start_time_unix_nano=self.start_time, time_unix_nano=now,
            count=count, sum=total, bucket_counts=counts, explicit_bounds=self.bounds,
            min=low, max=high, exemplars=_exemplars(p.attributes, slots) if slots else [])
            for p, count, total, counts, low, high, slots in live]
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=HistogramData(data_points=points,
                                         aggregation_temporality=AggregationTemporality.CUMULATIVE))

    def merge_into(self, data: Any, reader: Any = None) -> Any:
        """``data`` (what the SDK collected for one reader) with this histogram added."""
        from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics

        metric = self.metric(reader)
        if metric is None:
            return data
        resource_metrics = list(data.resource_metrics) if data is not None else []
        if not resource_metrics:
            return MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(self.scope, [metric],
                                                                             self.scope.schema_url)], "")])
        first = resource_metrics[0]
        scopes = list(first.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope == self.scope:
                scopes[i] = ScopeMetrics(sm.scope, [*sm.metrics, metric], sm.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(self.scope, [metric], self.scope.schema_url))
        resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        return MetricsData(resource_metrics)


def _exemplars(point_attributes: dict[str, Any], slots: list[tuple[Any, ...]]) -> list[Any]:
    """SDK ``Exemplar`` objects, as ``ExemplarBucket.collect`` builds them (bucket order)."""
    from opentelemetry.sdk.metrics import Exemplar

    out = []
    for _seq, value, when, span_id, trace_id, attributes in slots:
        # The measurement's attributes not already on the data point (none, unless the point is
        # the cardinality-overflow point), exactly as the SDK filters them.
        filtered = {k: v for k, v in attributes.items() if k not in point_attributes} if attributes else None
        out.append(Exemplar(filtered, value, when, span_id, trace_id))
    return out


def _exemplar_mode(exemplar_filter: Any) -> int:
    if exemplar_filter is None:
        return EXEMPLARS_OFF
    try:
        from opentelemetry.sdk.metrics import (
            AlwaysOffExemplarFilter,
            AlwaysOnExemplarFilter,
            TraceBasedExemplarFilter,
        )
    except ImportError:
        return EXEMPLARS_OFF
    if type(exemplar_filter) is TraceBasedExemplarFilter:
        return EXEMPLARS_TRACE_BASED
    if type(exemplar_filter) is AlwaysOffExemplarFilter:
        return EXEMPLARS_OFF
    if type(exemplar_filter) is AlwaysOnExemplarFilter:
        return EXEMPLARS_ALWAYS
    return EXEMPLARS_CUSTOM


_shared: dict[tuple[int, str, tuple[str, str, str]], tuple[Any, LeanHistogram]] = {}
_shared_lock = threading.Lock()


def lean_histogram(meter_provider: Any, name: str, unit: str, description: str, bounds: Iterable[float],
                   scope_identity: tuple[str, str, str]) -> LeanHistogram | None:
    """The :class:`LeanHistogram` for this provider and scope, or ``None`` (use the SDK instrument).

    One per (provider, scope, name), shared by every app instrumented in the process, as the SDK
    instrument would be: two apps must add into one stream, not export two same-named metrics.
    """
    key = (id(meter_provider), name, scope_identity)
    with _shared_lock:
        found = _shared.get(key)
        if found is not None and found[0] is meter_provider:
            return found[1]
        hist = _attach_lean_histogram(meter_provider, name, unit, description, bounds, scope_identity)
        if hist is not None:
            _shared[key] = (meter_provider, hist)
        return hist


def _attach_lean_histogram(meter_provider: Any, name: str, unit: str, description: str,
                           bounds: Iterable[float], scope_identity: tuple[str, str, str]) -> LeanHistogram | None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram as SDKHistogram
        from opentelemetry.sdk.metrics.export import AggregationTemporality
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if not isinstance(meter_provider, SDKMeterProvider):
            return None
        config = meter_provider._sdk_config
        readers = list(dict.fromkeys([*meter_provider._metric_readers,
                                      *meter_provider._measurement_consumer._reader_storages]))
        if not readers:
            return None
        for reader in readers:
            temporality = reader._instrument_class_temporality.get(SDKHistogram)
            if temporality is not AggregationTemporality.CUMULATIVE or not callable(reader._collect):
                return None
        scope = InstrumentationScope(scope_identity[0], scope_identity[1], scope_identity[2])
        hist = LeanHistogram(name, unit, description, bounds, scope, config.resource,
                             exemplar_filter=getattr(config, "exemplar_filter", None))
        for reader in readers:
            inner = reader._collect

            def collect(reader_: Any, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
                return hist.merge_into(_inner(reader_, *args, **kwargs), reader_)

            reader._set_collect_callback(collect)
        return hist
    except (AttributeError, ImportError, TypeError):
        return None


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
        self.lean = lean_histogram(meter_provider, DURATION, "s", description, duration_buckets(), identity) \
            if lean else None
        self.duration = None if self.lean is not None else meter.create_histogram(
            DURATION, unit="s", description=description)
        # Which requests may carry an exemplar: with the default trace-based filter only those whose
        # span records (the sampled ones), so the non-sampled path pays nothing for exemplars.
        mode = self.lean.exemplar_mode if self.lean is not None else EXEMPLARS_OFF
        self._exemplars_sampled = mode == EXEMPLARS_TRACE_BASED
        self._exemplars_all = mode in (EXEMPLARS_ALWAYS, EXEMPLARS_CUSTOM)
        # In-flight counts live in plain integer cells, one per (method, scheme), and are reported
        # by an observable up-down counter at collection time: two SDK measurements a request
        # (each one validates, copies and hashes its attributes) become two integer updates. The
        # exported series is the same non-monotonic sum the synchronous instrument produces.
        self._active_cells: dict[tuple[str, str], tuple[list[int], dict[str, str]]] = {}
        self.active = meter.create_observable_up_down_counter(
            ACTIVE, callbacks=[self._observe_active], unit="{request}",
            description="Number of active HTTP server requests.")
        self.excluded = frozenset(excluded_paths)
        self.known_methods = known_methods()
        # Which request headers the propagator reads (traceparent, tracestate, baggage, ...), as
        # lower-case bytes: a request carrying none of them skips extraction entirely.
        self._propagator_fields = frozenset(
            f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields)
        self._base: dict[tuple[str, str, str], tuple[list[int], dict[str, str]]] = {}
        self._final: dict[tuple[Any, ...], tuple[dict[str, Any], _Point | None]] = {}

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
                cell = ([0], {"http.request.method": method, "url.scheme": scheme})
                if len(self._active_cells) < MAX_CACHED_ATTRIBUTE_SETS:
                    self._active_cells[(method, scheme)] = cell
            request = dict(cell[1])
            if version:
                request["network.protocol.version"] = version
            found = (cell[0], request)
            if len(self._base) < MAX_CACHED_ATTRIBUTE_SETS:
                self._base[key] = found
        return found

    def _final_attributes(self, key: tuple[Any, ...], request: dict[str, str], route: str | None,
                          status: int, error: str | None) -> tuple[dict[str, Any], _Point | None]:
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
            found = (attrs, self.lean.point(key, attrs) if self.lean is not None else None)
            if len(self._final) < MAX_CACHED_ATTRIBUTE_SETS:
                self._final[key] = found
        return found

    def _parent_context(self, headers: Iterable[tuple[bytes, bytes]]) -> otel_context.Context | None:
        fields = self._propagator_fields
        carrier: dict[str, list[str]] | None = None
        for name, raw_value in headers:  # ASGI header names are lower-case already
            if name in fields:
                if carrier is None:
                    carrier = {}
                carrier.setdefault(name.decode("latin-1"), []).append(raw_value.decode("latin-1"))
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
        if scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        raw_method = scope.get("method", "")
        method = raw_method if raw_method in self.known_methods else "_OTHER"
        scheme = scope.get("scheme", "http")
        version = scope.get("http_version", "")
        active, request_attrs = self._base_attributes(method, scheme, version)
        root_path = scope.get("root_path", "")

        parent = self._parent_context(scope.get("headers", ()))
        span_name = method if method != "_OTHER" else "HTTP"
        span = self.gate.start(span_name, parent)
        recording = span.is_recording()
        if recording:
            _set_request_span_attributes(span, scope, request_attrs, raw_method, method)
        token = attach_span(span, parent)

        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        active[0] += 1
        stats = self.stats
        if stats is not None:
            stats.total += 1
        error: str | None = None
        exception: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            exception = exc
            error = error_type_of(exc)
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
            attrs, point = self._final_attributes((method, scheme, version, route, status, error),
                                                  request_attrs, route, status, error)
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
        attrs["url.query"] = query.decode("latin-1")
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
            attrs["user_agent.original"] = value.decode("latin-1")
        elif name == b"host":
            authority = value.decode("latin-1")
            host, sep, port = authority.rpartition(":")
            if sep and host and port.isdigit():
                attrs["server.address"] = host
                attrs["server.port"] = int(port)
            else:
                attrs["server.address"] = authority
    span.set_attributes(attrs)


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
        span.set_attributes(response)
    if route is not None:
        span.update_name(f"{method if method != '_OTHER' else 'HTTP'} {route}")
    if exception is not None:
        span.record_exception(exception)
        span.set_status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}")
    elif status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()


def duration_buckets() -> tuple[float, ...]:
    """The catalog's explicit buckets for ``http.server.request.duration``."""
    from sizewise_otel.catalog import signal

    return tuple(signal(DURATION).buckets or ())


def _global_meter_provider() -> MeterProvider:
    from opentelemetry import metrics

    return metrics.get_meter_provider()


def disable_native_fastapi_telemetry(app: Any) -> None:
    """FastAPI >= 0.165 records HTTP metrics and spans itself whenever global OTel providers exist
    (and defers only to the contrib middleware). With this layer in place that would record every
    request twice, plus internal operation spans: switch the native layer off for this app."""
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict):
        config.update(tracing=False, metrics=False, logs=False, operation_spans=False)
