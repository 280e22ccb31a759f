"""HTTP client traffic: the contrib httpx instrumentor, process-wide (its metrics are the catalog's
``http.client.request.duration``), installed once and removed with the last live handle."""

from __future__ import annotations

import contextlib
from typing import Any

from sizewise_otel.instruments.registry import MARKS, PROCESS


def instrument_httpx(telemetry: Any) -> None:
    """The contrib httpx instrumentor, process-wide, once (undone with the last live handle)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    if MARKS.claim(PROCESS, "httpx"):
        HTTPXClientInstrumentor().instrument(tracer_provider=telemetry.tracer_provider,
                                             meter_provider=telemetry.meter_provider)
        MARKS.claim(PROCESS, "httpx.ours")


def uninstrument_httpx() -> None:
    """Remove the httpx instrumentation if this package installed it (not zero-code mode's)."""
    if not MARKS.marked(PROCESS, "httpx.ours"):
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    with contextlib.suppress(Exception):
        HTTPXClientInstrumentor().uninstrument()
    MARKS.release(PROCESS, "httpx.ours")
    MARKS.release(PROCESS, "httpx")
