"""One histogram's measurements for the DB, Redis and cache layers: lean aggregation or SDK instrument.

:class:`Recorder` is what those layers record into. With the fast path on it binds each attribute
set once to a :class:`~sizewise_otel.fastpath.histogram.LeanHistogram` point; otherwise (the
provider does not allow it, or the fast path is off) it records through the SDK instrument, and
:meth:`Recorder.bind` / :meth:`Recorder.record` keep the same signature either way.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace

from sizewise_otel.fastpath.detect import enabled
from sizewise_otel.fastpath.exemplars import NO_EXEMPLARS, ExemplarPolicy
from sizewise_otel.fastpath.histogram import LeanHistogram, lean_histogram


class Recorder:
    """One catalog histogram with cached attribute sets.

    Exemplars keep the SDK's semantics: under the default trace-based filter a measurement made
    under a sampled span carries an exemplar (here: the operation's own CLIENT span), others do
    not, so the non-sampled path stays a plain record.
    """

    def __init__(self, telemetry: Any, name: str, scope: tuple[str, str, str | None]) -> None:
        from sizewise_otel.catalog import signal
        from sizewise_otel.instruments.buckets import histogram_buckets

        sig = signal(name)
        self.name = name
        self.instrument = telemetry.instrument(name)
        self.lean: LeanHistogram | None = None
        if enabled():
            try:
                self.lean = lean_histogram(telemetry.meter_provider, name, sig.unit, sig.description,
                                           histogram_buckets(name), scope)  # type: ignore[arg-type]
            except Exception:  # the SDK instrument is always a correct fallback
                self.lean = None
        policy: ExemplarPolicy = self.lean.policy if self.lean is not None else NO_EXEMPLARS
        # Only sampled measurements can carry an exemplar (trace-based filter) or none can (off).
        self.sampled_only = self.lean is not None and policy.sampled_only
        # A plain record (no span, no exemplar): the lean one when nothing else can apply.
        self.plain = self.lean.record if self.lean is not None and self.sampled_only else self.record
        # Counting under the histogram's own lock: one acquisition for a count cell and a measurement.
        self.lock = self.lean.lock if self.lean is not None else threading.Lock()
        self.record_counting = self.lean.record if self.sampled_only and self.lean is not None else None

    def bind(self, attributes: dict[str, str]) -> Any:
        """A handle for ``record`` (resolve once per attribute set, keep it)."""
        if self.lean is None:
            return attributes
        key = (self.name, *sorted(attributes.items()))
        return self.lean.point(key, attributes)

    def record(self, handle: Any, value: float, span: Any = None) -> None:
        """Record ``value``; ``span`` is the operation's recording span, if any (exemplars)."""
        lean = self.lean
        if lean is None:
            self.instrument.record(value, handle)
        elif span is None and self.sampled_only:
            lean.record(handle, value)
        else:
            lean.offer(handle, value, span if span is not None else trace.get_current_span(), handle.attributes)
