"""Zero-code mode: ``opentelemetry-instrument uvicorn app:app`` picks SizeWise's configuration up
through the standard ``opentelemetry_distro`` / ``opentelemetry_configurator`` entry points.

The distro sets SizeWise's defaults (stable semconv, 10 % parent-based sampling, probe paths
excluded) before any instrumentor loads; the configurator builds the same providers that
``instrument()`` uses, so both modes export identical signals.
"""

from __future__ import annotations

import os
from typing import Any

from sizewise_otel.fastpath import Configurator, Distro

DEFAULTS = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http,database",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "/metrics$,/livez$,/readyz$",
    "OTEL_PYTHON_ASGI_EXCLUDED_URLS": "/metrics$,/livez$,/readyz$",
}


class SizeWiseDistro(Distro):
    def configure_defaults(self, **kwargs: Any) -> None:
        for key, value in DEFAULTS.items():
            os.environ.setdefault(key, value)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        from sizewise_otel.instrumentation import mark_instrumented
        from sizewise_otel.instruments.system import SYSTEM_METRICS_CONFIG

        name = entry_point.name
        if name == "fastapi":
            kwargs.setdefault("exclude_spans", ["receive", "send"])
        if name == "system_metrics":
            instrumentor = entry_point.load()(config=SYSTEM_METRICS_CONFIG)
            instrumentor.instrument(**kwargs)
            mark_instrumented("system")
            return
        super().load_instrumentor(entry_point, **kwargs)
        if name in ("httpx",):
            mark_instrumented(name)


class SizeWiseConfigurator(Configurator):
    def configure_providers(self, **kwargs: Any) -> None:
        from sizewise_otel.telemetry import get_telemetry

        get_telemetry()  # builds and installs the global meter and tracer providers
