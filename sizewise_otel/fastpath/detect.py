"""Is the fast path usable here? Decided once per process, before anything relies on it.

The fast path reads and hooks SDK internals (see the package docstring). :func:`status` checks that
the installed opentelemetry-sdk, -api, -exporter-prometheus, -instrumentation and prometheus_client
still have every one of them; ``SIZEWISE_FASTPATH=0`` turns the fast path off regardless. When it is
off, instrumentation takes the public path and :func:`warn_if_disabled` logs one warning saying why.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sizewise.fastpath")

ENV = "SIZEWISE_FASTPATH"
_OFF_VALUES = frozenset({"0", "false", "off", "no"})


@dataclass(frozen=True)
class FastpathStatus:
    enabled: bool
    reason: str  # why it is off ("" when on)


def probed_once(probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe()`` run on the first call only (thread-safe), its answer kept for the process. A probe
    that raises (a moved internal) answers False: the library's own code stays in use."""
    verdict: list[bool] = []
    lock = threading.Lock()

    def answer() -> bool:
        if not verdict:
            with lock:
                if not verdict:
                    try:
                        verdict.append(bool(probe()))
                    except Exception:
                        verdict.append(False)
        return verdict[0]

    return answer


def probe_span_limits() -> Any:
    """Span limits for a probe's throwaway provider, read from nothing in the environment: a service's
    ``OTEL_SPAN_*_LIMIT`` must not thin a probe, and an invalid one would raise (the SDK reads a limit
    left None from the environment)."""
    from opentelemetry.sdk.trace import SpanLimits

    return SpanLimits(max_attributes=128, max_events=128, max_links=128, max_span_attributes=128,
                      max_event_attributes=128, max_link_attributes=128, max_attribute_length=SpanLimits.UNSET,
                      max_span_attribute_length=SpanLimits.UNSET)


def _has(module: str, *names: str) -> Callable[[], bool]:
    def check() -> bool:
        mod = importlib.import_module(module)
        return all(hasattr(mod, name) for name in names)
    return check


def _class_has(module: str, cls: str, *names: str) -> Callable[[], bool]:
    def check() -> bool:
        klass = getattr(importlib.import_module(module), cls)
        return all(hasattr(klass, name) for name in names)
    return check


def _meter_provider_internals() -> bool:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from sizewise_otel.fastpath.collection import probe_meter_provider

    reader = InMemoryMetricReader()
    provider = probe_meter_provider(reader)
    try:
        consumer = provider._measurement_consumer
        return (hasattr(provider, "_sdk_config") and hasattr(provider._sdk_config, "resource")
                and reader in provider._metric_readers and hasattr(consumer, "_reader_storages")
                and callable(reader._collect) and isinstance(reader._instrument_class_temporality, dict))
    finally:
        provider.shutdown()


def _tracer_internals() -> bool:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    # Nothing from the environment: an unknown OTEL_TRACES_SAMPLER would make the SDK log its own line.
    tracer = TracerProvider(sampler=ALWAYS_ON, resource=Resource.get_empty(), span_limits=probe_span_limits(),
                            shutdown_on_exit=False).get_tracer("sizewise.fastpath.probe")
    return callable(getattr(tracer, "_is_enabled", None)) and hasattr(tracer, "id_generator")


def _span_ending_hook() -> bool:
    """The hook the span scrubber runs in: the provider's processor fan-out must call ``_on_ending``."""
    from opentelemetry.sdk import trace as sdk_trace

    return (callable(getattr(sdk_trace.SynchronousMultiSpanProcessor, "_on_ending", None))
            and callable(getattr(sdk_trace.ConcurrentMultiSpanProcessor, "_on_ending", None))
            and "_on_ending" in sdk_trace.Span.end.__code__.co_names)


def _sampler_internals() -> bool:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    sampler = ParentBased(TraceIdRatioBased(0.5))
    return (hasattr(sampler, "_root") and hasattr(sampler, "_local_parent_not_sampled")
            and hasattr(sampler, "_local_parent_sampled") and hasattr(sampler, "_remote_parent_sampled")
            and hasattr(sampler, "_remote_parent_not_sampled") and hasattr(ALWAYS_OFF, "_decision")
            and isinstance(sampler._root.bound, int) and hasattr(TraceIdRatioBased, "TRACE_ID_LIMIT"))


def _runtime_context() -> bool:
    from opentelemetry import context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = context._RUNTIME_CONTEXT
    return type(runtime) is not ContextVarsRuntimeContext or hasattr(runtime, "_current_context")


def _registry_internals() -> bool:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    return (hasattr(registry, "_lock") and isinstance(registry._collector_to_names, dict)
            and callable(getattr(registry, "_target_info_metric", None)))


def _light_aggregations() -> bool:
    from sizewise_otel.fastpath.collection import probe

    return probe()


# (what the fast path uses, how to check it); every check must pass.
CHECKS: tuple[tuple[str, Callable[[], bool]], ...] = (
    ("MeterProvider readers and config", _meter_provider_internals),
    ("MetricReader collect callback", _class_has("opentelemetry.sdk.metrics.export", "MetricReader",
                                                 "_set_collect_callback")),
    ("SDK histogram and counter classes", _has("opentelemetry.sdk.metrics._internal.instrument", "_Histogram",
                                               "_Counter")),
    ("SDK exemplar types", _has("opentelemetry.sdk.metrics", "Exemplar", "TraceBasedExemplarFilter",
                                "AlwaysOnExemplarFilter", "AlwaysOffExemplarFilter")),
    ("Tracer internals", _tracer_internals),
    ("sampler internals", _sampler_internals),
    ("span context key", _has("opentelemetry.trace.propagation", "_SPAN_KEY")),
    ("the span pre-export hook (_on_ending, 1.36+)", _span_ending_hook),
    ("runtime context", _runtime_context),
    ("the Prometheus reader's light sum and gauge aggregations", _light_aggregations),
    ("Prometheus reader internals", _class_has("opentelemetry.exporter.prometheus", "PrometheusMetricReader",
                                               "_receive_metrics")),
    ("Prometheus collector internals", _class_has(
        "opentelemetry.exporter.prometheus", "_CustomCollector", "_check_value", "_create_info_metric",
        "_build_resource_attrs", "_build_scope_attrs", "_resolve_metric_name", "_translate_metric")),
    ("Prometheus name mapping", _has("opentelemetry.exporter.prometheus._mapping", "map_unit",
                                     "sanitize_attribute")),
    ("prometheus_client registry internals", _registry_internals),
    ("prometheus_client metric name escaping (0.22+)", _has("prometheus_client.openmetrics.exposition",
                                                            "escape_metric_name")),
    ("semconv schema URLs", _has("opentelemetry.instrumentation._semconv", "_get_schema_url", "_StabilityMode")),
)

# OTEL_SDK_DISABLED=true: the SDK hands out no-op tracers and meters, so there is nothing for the fast
# path to speed up (and its probes would fail for that reason, not for a missing internal). The
# telemetry module logs its own warning for it: no second one here.
SDK_DISABLED_REASON = "OTEL_SDK_DISABLED=true (no telemetry is recorded)"


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").lower().strip() == "true"  # as the SDK reads it


_status: FastpathStatus | None = None
_warned = False
_lock = threading.Lock()


def _evaluate() -> FastpathStatus:
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in _OFF_VALUES:
        return FastpathStatus(False, f"{ENV}={os.environ[ENV]}")
    if _sdk_disabled():
        return FastpathStatus(False, SDK_DISABLED_REASON)
    for what, check in CHECKS:
        try:
            ok = check()
        except Exception as exc:  # an import or attribute error is exactly what we look for
            return FastpathStatus(False, f"the installed SDK lacks {what} ({type(exc).__name__}: {exc})")
        if not ok:
            return FastpathStatus(False, f"the installed SDK lacks {what}")
    return FastpathStatus(True, "")


def status() -> FastpathStatus:
    """The process's decision (evaluated on first call, then fixed: providers are built on it)."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                _status = _evaluate()
    return _status


def enabled() -> bool:
    return status().enabled


def warn_if_disabled() -> FastpathStatus:
    """``status()``, logging one warning per process when the public path is in use."""
    global _warned
    found = status()
    if not found.enabled and not _warned and found.reason != SDK_DISABLED_REASON:
        _warned = True
        log.warning("sizewise fast path off: %s; using the public OpenTelemetry APIs (same series, slower)",
                    found.reason)
    return found


def reset_for_tests() -> None:
    """Forget the decision (tests flip ``SIZEWISE_FASTPATH`` in one process)."""
    global _status, _warned
    with _lock:
        _status, _warned = None, False
