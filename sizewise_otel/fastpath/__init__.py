"""The fast path: the only place in sizewise_otel that touches private names of the OpenTelemetry
SDK, API, contrib packages or prometheus_client (and, in ``fastapi_native``, FastAPI's per-app
native-telemetry switches, which ``instrument()`` turns off whichever path it takes).

It holds what makes instrumentation cheap: the span gates (decide sampling before the SDK does the
work, and build a span they decided sampled without the sampler asked again), the lean histogram
and sum with the reader hook that exports them, the catalog's lean counters and histograms, the
recorder the DB, Redis and cache layers share, the HTTP layer's context swaps, the exemplar policy,
the one-pass text exposition behind ``GET /metrics``, the OTLP span encoder the export thread
uses, the span hooks the error tracker scrubs through, and :class:`BoundedCache`, the one size-capped memo type.
:mod:`~sizewise_otel.fastpath.detect` checks once per process that the installed packages still have
every internal these rely on; when one is missing, or ``SIZEWISE_FASTPATH=0``,
:func:`enabled` is false and ``instrument()`` takes the public path (contrib instrumentors, the
SDK's ``PrometheusMetricReader``) with one warning. Everything outside this folder uses public
APIs and the names exported here (a unit test scans for violations).
"""

from sizewise_otel.fastpath.bounded import BoundedCache
from sizewise_otel.fastpath.catalog_instruments import lean_counter, lean_histogram_instrument
from sizewise_otel.fastpath.detect import FastpathStatus, enabled, status, warn_if_disabled
from sizewise_otel.fastpath.exemplars import NO_EXEMPLARS, ExemplarPolicy
from sizewise_otel.fastpath.exposition import collect_samples, generate_latest, prometheus_reader
from sizewise_otel.fastpath.histogram import LeanHistogram, LeanPoint, detach_lean_histograms, lean_histogram
from sizewise_otel.fastpath.otlp_spans import encoding as lean_otlp_encoding
from sizewise_otel.fastpath.otlp_spans import install as install_lean_otlp_encoder
from sizewise_otel.fastpath.otlp_spans import uninstall as uninstall_lean_otlp_encoder
from sizewise_otel.fastpath.recorder import Recorder
from sizewise_otel.fastpath.sdk import (
    Configurator,
    Distro,
    contrib_scope,
    exporter_preferences,
    instrumented_by_contrib,
    schema_url,
)
from sizewise_otel.fastpath.spangate import (
    ServerSpanGate,
    SpanGate,
    current_sampled_span,
    current_span,
    detach,
    enter_span,
    restore_id_generators,
    send_in_context,
)
from sizewise_otel.fastpath.spans import set_span_attributes

__all__ = [
    "NO_EXEMPLARS",
    "BoundedCache",
    "Configurator",
    "Distro",
    "ExemplarPolicy",
    "FastpathStatus",
    "LeanHistogram",
    "LeanPoint",
    "Recorder",
    "ServerSpanGate",
    "SpanGate",
    "collect_samples",
    "contrib_scope",
    "current_sampled_span",
    "current_span",
    "detach",
    "detach_lean_histograms",
    "enabled",
    "enter_span",
    "exporter_preferences",
    "generate_latest",
    "install_lean_otlp_encoder",
    "instrumented_by_contrib",
    "lean_counter",
    "lean_histogram",
    "lean_histogram_instrument",
    "lean_otlp_encoding",
    "prometheus_reader",
    "restore_id_generators",
    "schema_url",
    "send_in_context",
    "set_span_attributes",
    "status",
    "uninstall_lean_otlp_encoder",
    "warn_if_disabled",
]
