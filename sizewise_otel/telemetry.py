"""OTel providers for this process: resource, meter provider (Prometheus pull + optional OTLP push),
tracer provider, and the catalog's instruments. Built once per process; everything else asks
``get_telemetry()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import DropAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from sizewise_otel.catalog import SIGNALS, TELEMETRY_SIGNAL, Kind, Signal, signal
from sizewise_otel.fastpath import (
    detach_lean_histograms,
    exporter_preferences,
    install_lean_otlp_encoder,
    lean_counter,
    lean_histogram_instrument,
    lean_otlp_encoding,
    prometheus_reader,
)
from sizewise_otel.fastpath import enabled as fastpath_enabled
from sizewise_otel.instruments.buckets import histogram_buckets
from sizewise_otel.instruments.registry import MARKS
from sizewise_otel.settings import Settings, SettingsError, ensure_semconv_opt_in

log = logging.getLogger("sizewise.telemetry")

SCOPE = "sizewise_otel"
# Pod identity from the Kubernetes downward API (see k8s/): env var -> resource attribute.
K8S_ENV = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
    "K8S_DEPLOYMENT_NAME": "k8s.deployment.name",
    "K8S_CONTAINER_NAME": "k8s.container.name",
    "POD_NAME": "k8s.pod.name",
    "POD_NAMESPACE": "k8s.namespace.name",
    "NODE_NAME": "k8s.node.name",
}


def build_resource(settings: Settings, extra: dict[str, str] | None = None) -> Resource:
    attrs: dict[str, str] = {
        "service.name": settings.otel_service_name,
        "service.namespace": "sizewise",
        "service.version": settings.service_version,
        # Per process, so forked workers exporting OTLP never overwrite each other's series.
        "service.instance.id": str(uuid.uuid4()),
        "deployment.environment.name": settings.deployment_environment,
    }
    for env, key in K8S_ENV.items():
        if os.environ.get(env):
            attrs.setdefault(key, os.environ[env])
    from sizewise_otel.instruments.container import container_id

    cid = container_id()
    if cid:
        attrs["container.id"] = cid
    attrs.update(extra or {})
    # Resource.create lets the attributes given in code win over OTEL_RESOURCE_ATTRIBUTES; the operator's
    # environment must win over our defaults, so it is merged once more on top.
    return Resource.create(attrs).merge(OTELResourceDetector().detect())


# Recorded by the contrib FastAPI/ASGI instrumentor but not by the fast HTTP layer: on the public
# path they are dropped, so both paths export the same series.
CONTRIB_ONLY_INSTRUMENTS = ("http.server.request.body.size", "http.server.response.body.size")


def build_views(public_path: bool = False) -> list[View]:
    """Explicit buckets (the semconv-advised ones for HTTP/DB durations unless
    SIZEWISE_FINE_LATENCY_BUCKETS opts in: instruments/buckets.py) and an attribute allow-list for
    every histogram: bounded series."""
    views = [View(instrument_name=name, aggregation=DropAggregation()) for name in CONTRIB_ONLY_INSTRUMENTS] \
        if public_path else []
    for sig in SIGNALS:
        if sig.kind is Kind.HISTOGRAM:
            views.append(View(
                instrument_name=sig.name,
                aggregation=ExplicitBucketHistogramAggregation(list(histogram_buckets(sig.name))),
                attribute_keys=set(sig.attributes),
            ))
        elif sig.owner.name.startswith("OTEL_HTTP"):
            views.append(View(instrument_name=sig.name, attribute_keys=set(sig.attributes)))
    return views


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``, read as the SDK reads it: no telemetry at all."""
    return os.environ.get("OTEL_SDK_DISABLED", "").lower().strip() == "true"


# The SDK's own names (OTEL_TRACES_SAMPLER); built here rather than through their entry points so the
# fast path's span gate recognises them (it mirrors ParentBased / TraceIdRatioBased).
_SDK_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "always_on": lambda _ratio: ALWAYS_ON,
    "always_off": lambda _ratio: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
    "parentbased_always_on": lambda _ratio: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda _ratio: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda ratio: ParentBased(TraceIdRatioBased(ratio)),
}


def build_sampler(settings: Settings) -> Sampler:
    """OTEL_TRACES_SAMPLER[_ARG] (default: parent-based, 10 % of new traces).

    Any other name is looked up among the ``opentelemetry_traces_sampler`` entry points, called with
    the OTEL_TRACES_SAMPLER_ARG text (None when unset), as the SDK's configurator does. A name that is neither, or a
    factory that fails, gets what the SDK does with it: one warning and ``parentbased_always_on``.
    """
    name = settings.otel_traces_sampler.strip()
    known = _SDK_SAMPLERS.get(name.lower())
    if known is not None:
        ratio = settings.traces_sampler_ratio
        if ratio is None:
            from sizewise_otel.settings import DEFAULT_SAMPLER_RATIO as ratio
            if name.lower().endswith("traceidratio"):  # the SDK warns and goes on too
                log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio between 0 and 1; using %s",
                            settings.otel_traces_sampler_arg, ratio)
        return known(ratio)
    from importlib.metadata import entry_points

    found = list(entry_points(group="opentelemetry_traces_sampler", name=name))
    try:
        if not found:
            raise LookupError("no such sampler (not an SDK name, no opentelemetry_traces_sampler entry point)")
        sampler = found[0].load()(settings.traces_sampler_arg_set)
        if not isinstance(sampler, Sampler):
            raise TypeError(f"its factory returned {type(sampler).__name__}, not a Sampler")
        return sampler
    except Exception as exc:
        log.warning("OTEL_TRACES_SAMPLER=%s: %s; using parentbased_always_on, as the OpenTelemetry SDK does",
                    name, exc)
        return ParentBased(ALWAYS_ON)


_EXEMPLAR_FILTERS: dict[str, Callable[[], ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}


def build_exemplar_filter() -> ExemplarFilter:
    """OTEL_METRICS_EXEMPLAR_FILTER (default ``trace_based``), passed to the meter provider explicitly so
    every recorder (the SDK's and the fast path's lean ones, which read the provider's) follows it.

    The SDK raises a bare ValueError on an unknown value; this names the variable (still a ValueError).
    """
    raw = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip().lower() or "trace_based"
    factory = _EXEMPLAR_FILTERS.get(raw)
    if factory is None:
        raise SettingsError(f"invalid configuration: OTEL_METRICS_EXEMPLAR_FILTER: expected one of "
                            f"{', '.join(_EXEMPLAR_FILTERS)}, got {raw!r}")
    return factory()


class _CountingMetricExporter(MetricExporter):
    """Wraps the OTLP exporter so failed batches become a metric and a health input."""

    def __init__(self, inner: MetricExporter, on_failure: Callable[[str], None]) -> None:
        super().__init__(**exporter_preferences(inner))
        self._inner = inner
        self._on_failure = on_failure

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kw)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._on_failure("metrics")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kw)


class _CountingSpanExporter(SpanExporter):
    """Counts failed exports; with ``lean`` the OTLP exporter inside encodes with the fast path's encoder."""

    def __init__(self, inner: SpanExporter, on_failure: Callable[[str], None], lean: bool = False) -> None:
        self._inner = inner
        self._on_failure = on_failure
        self._lean = lean

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            with lean_otlp_encoding() if self._lean else contextlib.nullcontext():
                result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._on_failure("traces")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _ScrubbingSpanExporter(SpanExporter):
    """Public path: scrubs each span right before export with the provider's span scrubber.

    Without the SDK's pre-export hook the scrubber runs in ``on_end``, after the processors added
    before it (this module's ``BatchSpanProcessor``s) have queued the span; scrubbing again here
    means an export racing that ``on_end`` never sends an unscrubbed value.
    """

    def __init__(self, inner: SpanExporter, provider: Any) -> None:
        self._inner = inner
        self._provider = provider

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        scrubber = MARKS.get(self._provider, "span.scrubber")
        if scrubber is not None:
            for span in spans:
                scrubber.scrub(span)
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _otlp_exporters(settings: Settings) -> tuple[MetricExporter, SpanExporter]:
    # Endpoint, headers, TLS certificates and timeouts come from the standard OTEL_EXPORTER_OTLP_*
    # variables, which the exporters read themselves.
    if settings.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPMetricExporter(), OTLPSpanExporter()


@dataclass
class ExportStats:
    failures: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "traces": 0})
    last_failure: float = 0.0


class Telemetry:
    """The process's providers and the catalog's synchronous instruments."""

    def __init__(self, settings: Settings, *, readers: Iterable[MetricReader] = (),
                 span_exporters: Iterable[SpanExporter] = (), set_global: bool = True) -> None:
        ensure_semconv_opt_in(settings)
        self.settings = settings
        self.resource = build_resource(settings)
        self.export_stats = ExportStats()
        self.disabled = sdk_disabled()
        if self.disabled:
            self._init_disabled()
            return
        # A PrometheusMetricReader (REGISTRY.collect() unchanged); with the fast path it also renders
        # GET /metrics in one pass.
        self.prometheus_reader = prometheus_reader()
        all_readers: list[MetricReader] = [self.prometheus_reader, *readers]
        span_exporter_list = list(span_exporters)
        if settings.otlp_enabled:
            metric_exporter, span_exporter = _otlp_exporters(settings)
            if settings.otlp_metrics_enabled:
                all_readers.append(PeriodicExportingMetricReader(
                    _CountingMetricExporter(metric_exporter, self._export_failed),
                    export_interval_millis=settings.otel_metric_export_interval,
                ))
            if settings.otlp_traces_enabled:
                # The export thread's largest cost was building the OTLP message; the fast path's encoder
                # gives the same message in about a fifth of the time (docs/performance.md).
                lean = fastpath_enabled() and install_lean_otlp_encoder()
                span_exporter_list.append(_CountingSpanExporter(span_exporter, self._export_failed, lean))
        self.meter_provider = MeterProvider(
            metric_readers=all_readers, resource=self.resource, views=build_views(not fastpath_enabled()),
            exemplar_filter=build_exemplar_filter(),
        )
        # Bounded: BatchSpanProcessor drops (and counts) spans past max_queue_size (2048).
        self.tracer_provider = TracerProvider(resource=self.resource, sampler=build_sampler(settings))
        # A service that set its own SDK TracerProvider keeps it: SizeWise's spans and processors join it.
        from sizewise_otel.web.coexist import adopt_tracer_provider
        own_tracer_provider = self.tracer_provider
        self.tracer_provider = adopt_tracer_provider(own_tracer_provider, set_global)
        self.adopted_tracer_provider = self.tracer_provider is not own_tracer_provider
        for exporter in span_exporter_list:
            if not fastpath_enabled():
                exporter = _ScrubbingSpanExporter(exporter, self.tracer_provider)
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        if set_global:
            _set_global_providers(self.meter_provider, self.tracer_provider)
        self._create_instruments()
        # Here, not in the HTTP layer: zero-code mode and gunicorn --preload build telemetry without it.
        from sizewise_otel.runtime.fork import renew_identity_after_fork
        renew_identity_after_fork(self)

    def _init_disabled(self) -> None:
        """OTEL_SDK_DISABLED=true: the SDK's providers, which hand out no-op meters and tracers when
        disabled, with no reader, exporter or processor (so no thread, no /metrics series of ours) and
        not made global. Everything that records keeps working and records nothing."""
        self.prometheus_reader = None  # type: ignore[assignment]
        self.meter_provider = MeterProvider(resource=self.resource, shutdown_on_exit=False)
        self.tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self.adopted_tracer_provider = False
        log.warning("OTEL_SDK_DISABLED=true: sizewise-otel records no telemetry (no spans, no metrics, no "
                    "exporters; GET /metrics serves no OpenTelemetry series); the app's routes and /health "
                    "are served as usual")
        self._create_instruments()

    def _create_instruments(self) -> None:
        settings = self.settings
        self.meter = self.meter_provider.get_meter(SCOPE, settings.service_version)
        self.tracer = self.tracer_provider.get_tracer(SCOPE, settings.service_version)
        self._instruments: dict[str, Any] = {}
        self._observed: set[str] = set()
        self._lock = threading.Lock()
        for sig in SIGNALS:
            if (sig.kind in (Kind.COUNTER, Kind.UP_DOWN_COUNTER, Kind.HISTOGRAM, Kind.GAUGE) \
                    and sig.owner.name == "SIZEWISE") or sig.name == "db.client.operation.duration":
                self._instruments[sig.name] = self._create(sig)

    def _create(self, sig: Signal) -> Any:
        factory = {
            Kind.COUNTER: self.meter.create_counter,
            Kind.UP_DOWN_COUNTER: self.meter.create_up_down_counter,
            Kind.HISTOGRAM: self.meter.create_histogram,
            Kind.GAUGE: self.meter.create_gauge,
        }[sig.kind]
        sdk = factory(sig.name, unit=sig.unit, description=sig.description)
        if self.disabled or not fastpath_enabled() or sig.owner.name != "SIZEWISE":
            return sdk
        # SizeWise's own counters and histograms record into lean aggregations the readers export as
        # the SDK would (fastpath/catalog_instruments.py): the service records them on its requests.
        scope = (SCOPE, self.settings.service_version, None)
        if sig.kind is Kind.COUNTER:
            return lean_counter(self.meter_provider, sdk, sig.name, sig.unit, sig.description, scope)
        if sig.kind is Kind.HISTOGRAM:
            return lean_histogram_instrument(self.meter_provider, sdk, sig.name, sig.unit, sig.description,
                                             histogram_buckets(sig.name), sig.attributes, scope)
        return sdk

    def _export_failed(self, which: str) -> None:
        self.export_stats.failures[which] += 1
        self.export_stats.last_failure = time.time()
        self.instrument("sizewise.telemetry.export.failures").add(1, {TELEMETRY_SIGNAL: which})

    def instrument(self, name: str) -> Any:
        """The synchronous instrument for a catalog signal (counter, histogram, ...)."""
        return self._instruments[name]

    def observe(self, name: str, callback: Callable[[], Iterable[tuple[float, dict[str, str]]]]) -> None:
        """Register the callback of an observable catalog signal, cached for the signal's tier.

        The callback returns (value, attributes) pairs. Registering a signal twice is ignored.
        """
        sig = signal(name)
        with self._lock:
            if name in self._observed:
                return
            self._observed.add(name)
        cached = tier_cached(callback, float(sig.tier or 0))

        def _cb(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                return [Observation(v, a) for v, a in cached()]
            except Exception:  # a failing probe must never break a scrape
                return []

        factory = {
            Kind.OBSERVABLE_GAUGE: self.meter.create_observable_gauge,
            Kind.OBSERVABLE_COUNTER: self.meter.create_observable_counter,
            Kind.OBSERVABLE_UP_DOWN_COUNTER: self.meter.create_observable_up_down_counter,
        }[sig.kind]
        factory(sig.name, callbacks=[_cb], unit=sig.unit, description=sig.description)

    def shutdown(self) -> None:
        # A service's own TracerProvider is the service's to shut down: flush what SizeWise added to it.
        tp = self.tracer_provider
        tracer_done = tp.force_flush if self.adopted_tracer_provider else tp.shutdown
        for fn in (tracer_done, self.meter_provider.shutdown):
            with contextlib.suppress(Exception):
                fn()
        detach_lean_histograms(self.meter_provider)  # after the readers' last export, which includes them


def tier_cached(fn: Callable[[], Any], seconds: float) -> Callable[[], Any]:
    """Evaluate ``fn`` at most once per ``seconds``: a scrape never pays for a slow probe twice."""
    state: dict[str, Any] = {"at": -1e18, "value": None}
    lock = threading.Lock()

    def wrapper() -> Any:
        now = time.monotonic()
        with lock:
            if now - state["at"] >= seconds:
                state["value"] = list(fn())
                state["at"] = now
            return state["value"]

    return wrapper


_global_set = False


def _set_global_providers(mp: MeterProvider, tp: TracerProvider) -> None:
    global _global_set
    if _global_set:
        return
    _global_set = True
    current_mp = metrics.get_meter_provider()
    if type(current_mp).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
        metrics.set_meter_provider(mp)
    current_tp = trace.get_tracer_provider()
    if type(current_tp).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        trace.set_tracer_provider(tp)


_telemetry: Telemetry | None = None
_telemetry_lock = threading.Lock()


def configure_telemetry(settings: Settings, **kwargs: Any) -> Telemetry:
    """Build the process's Telemetry explicitly (e.g. with extra readers or span exporters).

    Must run before anything calls ``get_telemetry()``; a second call is an error.
    """
    global _telemetry
    with _telemetry_lock:
        if _telemetry is not None:
            raise RuntimeError("telemetry is already configured for this process")
        _telemetry = Telemetry(settings, **kwargs)
        return _telemetry


def get_telemetry(settings: Settings | None = None) -> Telemetry:
    """The process's Telemetry, built on first use (the Prometheus registry allows one)."""
    global _telemetry
    with _telemetry_lock:
        if _telemetry is None:
            from sizewise_otel.settings import get_settings

            _telemetry = Telemetry(settings or get_settings())
        return _telemetry
