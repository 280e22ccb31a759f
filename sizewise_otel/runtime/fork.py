"""Forked workers get their own telemetry identity (gunicorn ``--preload``, multiprocessing).

With ``--preload`` the app is built and instrumented once in the master, then forked into the
workers: each worker inherits the master's providers, resource and ``service.instance.id``. Pushed
over OTLP, cumulative series of several workers under one instance id overwrite each other (and
liveness, counted per ``service.instance.id``, sees one instance). After a fork, in the child:

- ``service.instance.id`` is renewed. Recent OpenTelemetry SDKs do it themselves (1.45's providers
  merge a fresh id after a fork); older ones (1.33 to at least 1.39) keep the parent's, so a new one
  is set on the resource object every provider, tracer and lean histogram shares. An id the operator
  set in ``OTEL_RESOURCE_ATTRIBUTES`` is left alone on those (recent SDKs replace it regardless).
- ``Telemetry.resource`` is kept equal to what the providers export.
- The contrib system-metrics instrumentor reads this process, not the parent.

The SDK re-creates its own export threads after a fork (``PeriodicExportingMetricReader``,
``BatchSpanProcessor``); the error writer and the alert notifier restart theirs on first use.
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from typing import Any

from opentelemetry.sdk.resources import OTELResourceDetector

from sizewise_otel.fastpath.fork import refresh_system_metrics_process, set_resource_attribute

INSTANCE_ID = "service.instance.id"

log = logging.getLogger("sizewise.runtime.fork")

_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def renew_identity_after_fork(telemetry: Any) -> None:
    """Register (once per Telemetry) the after-fork renewal for this process's providers."""
    if telemetry in _watched or not hasattr(os, "register_at_fork"):
        return
    _watched.add(telemetry)
    ref = weakref.ref(telemetry)
    parent: list[str | None] = [None]

    def before() -> None:
        found = ref()
        parent[0] = _exported_id(found) if found is not None else None

    def after_in_child() -> None:
        found = ref()
        if found is not None:
            try:
                renew_identity(found, parent_id=parent[0])
            except Exception:  # a worker must start whatever an SDK release changed
                log.warning("could not renew the telemetry identity after fork", exc_info=True)

    # The SDK's own after-fork hooks (registered when its providers were built, before this one) run
    # first: the id read in the child is the one the providers export after their own renewal.
    os.register_at_fork(before=before, after_in_child=after_in_child)


def renew_identity(telemetry: Any, parent_id: str | None) -> str | None:
    """Make this process's exported ``service.instance.id`` its own; returns the id now exported.

    ``parent_id`` is the id the providers exported before the fork: when they still do (an SDK without
    its own after-fork renewal), a new one is set, unless the operator chose it.
    """
    refresh_system_metrics_process()
    current = _exported_id(telemetry)
    if current is None:
        return None
    if current == parent_id and current != OTELResourceDetector().detect().attributes.get(INSTANCE_ID):
        current = str(uuid.uuid4())
        for resource in _resources(telemetry):
            set_resource_attribute(resource, INSTANCE_ID, current)
    own = getattr(telemetry, "resource", None)
    if own is not None and own.attributes.get(INSTANCE_ID) != current:
        set_resource_attribute(own, INSTANCE_ID, current)  # Telemetry.resource says what is exported
    return _exported_id(telemetry)


def _exported_id(telemetry: Any) -> str | None:
    provider = getattr(telemetry, "tracer_provider", None)
    resource = getattr(provider, "resource", None)  # public on the SDK's TracerProvider
    value = resource.attributes.get(INSTANCE_ID) if resource is not None else None
    return str(value) if value is not None else None


def _resources(telemetry: Any) -> list[Any]:
    """The distinct resource objects behind the providers (one, unless something replaced it)."""
    found: dict[int, Any] = {}
    for resource in (getattr(telemetry, "resource", None),
                     getattr(getattr(telemetry, "tracer_provider", None), "resource", None)):
        if resource is not None:
            found[id(resource)] = resource
    return list(found.values())
