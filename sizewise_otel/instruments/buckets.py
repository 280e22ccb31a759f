"""Histogram boundaries of the catalog's histograms, with the opt-in finer latency resolution.

By default the HTTP and database durations use the boundaries the semantic conventions advise
(catalog: ``HTTP_DURATION_BUCKETS``, ``DB_DURATION_BUCKETS``), so any dashboard written for an OTel
service reads them. ``SIZEWISE_FINE_LATENCY_BUCKETS=true`` adds the sub-5 ms boundaries below
(0.5/1/2.5 ms for HTTP; 0.1/0.25/0.5/2.5 ms for database operations, which are often sub-millisecond)
on top of the advised ones, which all stay: a quantile or an ``le="0.5"`` SLO query works either way.
Every recorder of these histograms (the SDK views, the lean HTTP and DB/Redis histograms) asks
:func:`histogram_buckets`, so both paths export the same boundaries.
"""

from __future__ import annotations

import os

from sizewise_otel.catalog import signal

FINE_BUCKETS_ENV = "SIZEWISE_FINE_LATENCY_BUCKETS"
_HTTP_FINE = (0.0005, 0.001, 0.0025)
FINE_EXTRA_BUCKETS: dict[str, tuple[float, ...]] = {
    "http.server.request.duration": _HTTP_FINE,
    "http.client.request.duration": _HTTP_FINE,
    "db.client.operation.duration": (0.0001, 0.00025, 0.0005, 0.0025),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def fine_latency_buckets() -> bool:
    """``SIZEWISE_FINE_LATENCY_BUCKETS`` as a boolean (the spellings pydantic accepts); anything else
    is a configuration error, not a silent default."""
    raw = os.environ.get(FINE_BUCKETS_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    from sizewise_otel.settings import SettingsError

    raise SettingsError(f"invalid configuration: {FINE_BUCKETS_ENV}: expected true or false, got {raw!r}")


def histogram_buckets(name: str, fine: bool | None = None) -> tuple[float, ...]:
    """The explicit boundaries for the catalog histogram ``name`` (``fine``: the opt-in; default: the
    environment's)."""
    base = tuple(signal(name).buckets or ())
    extra = FINE_EXTRA_BUCKETS.get(name)
    if not extra or not (fine_latency_buckets() if fine is None else fine):
        return base
    return tuple(sorted(set(base) | set(extra)))
