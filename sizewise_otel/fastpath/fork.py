"""What a forked worker must not inherit from its parent, where only SDK/contrib internals reach it.

Used by :mod:`sizewise_otel.runtime.fork` in the child right after ``fork()`` (gunicorn
``--preload``, multiprocessing): each function is feature-detected and returns whether it could act,
so an SDK release that moves the internal degrades to a logged no-op, never to a failed worker.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.attributes import BoundedAttributes


def set_resource_attribute(resource: Any, key: str, value: str) -> bool:
    """Give an SDK ``Resource`` object a new value for one attribute, in place.

    The one ``Resource`` object is shared by reference: the meter provider's configuration, the
    tracer provider, every tracer (and so every new span) and the fast path's lean histograms all
    hold it, so changing it once changes what all of them export. ``Resource`` has no public setter.
    """
    if not isinstance(getattr(resource, "_attributes", None), BoundedAttributes):
        return False
    attributes = dict(resource.attributes)
    attributes[key] = value
    resource._attributes = BoundedAttributes(attributes=attributes)  # immutable, as Resource builds it
    return True


def refresh_system_metrics_process() -> bool:
    """Point the contrib system-metrics instrumentor's ``process.*`` readings at this process.

    It keeps ``psutil.Process(os.getpid())`` from its construction, so after a fork every worker would
    report its parent's CPU, memory, threads and descriptors. False when it was never built here.
    """
    try:
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    except ImportError:
        return False
    instance = SystemMetricsInstrumentor.__dict__.get("_instance")
    proc = getattr(instance, "_proc", None)
    if proc is None or getattr(proc, "pid", None) == os.getpid():
        return False
    import psutil

    instance._proc = psutil.Process(os.getpid())
    return True
