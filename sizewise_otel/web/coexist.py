"""What a service already has when ``instrument()`` arrives, and what SizeWise does beside it.

Found with public attributes only (plus FastAPI's own ``_telemetry`` config), decided once per app, and
reported in one ``coexistence`` log line:

- **its own TracerProvider** (an SDK one, set globally before SizeWise's telemetry is built): SizeWise
  uses it, so its SERVER/DB/client spans join the service's pipeline (sampler, resource, processors), and
  adds its own span processors (OTLP when configured) to it. A non-SDK provider is left alone.
- **its own MeterProvider**: stays the global one, untouched. SizeWise's series stay on SizeWise's own
  MeterProvider: the catalog's views (explicit buckets, attribute allow-lists) can only be given to a
  provider at construction, and SDK 1.33 cannot add a reader to a built one.
- **the contrib FastAPIInstrumentor** on the app: kept as the app's one HTTP server layer when it records
  into SizeWise's MeterProvider (the global one: the default, and zero-code mode); otherwise handed over:
  removed from the app so SizeWise's layer records (spans still go to the service's TracerProvider),
  put back by ``uninstrument()``.
- **FastAPI's native telemetry** (FastAPI >= 0.142, with or without its own providers): switched off for
  this app (``instruments.http_server.disable_native_fastapi_telemetry``); SizeWise's layer records.
- **prometheus-fastapi-instrumentator**: left as it is (its own metric names, counted beside ours). An
  existing ``GET /metrics`` route (its ``expose()``, or any other) is kept and SizeWise adds none: that
  route renders the same prometheus_client registry, so SizeWise's series are served there too.
- **Sentry** (its Starlette/FastAPI integration): left as it is. Its transactions are not OTel spans, and
  SizeWise's HTTP layer re-raises, so unhandled exceptions still reach it.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from sizewise_otel.fastpath.fastapi_native import native_telemetry_config, native_telemetry_enabled

# The tracer providers SizeWise built (a later Telemetry must not take an earlier one for the service's),
# and the service's ones it adopted.
_OWN_TRACER_PROVIDERS: weakref.WeakSet[Any] = weakref.WeakSet()
_ADOPTED_TRACER_PROVIDERS: weakref.WeakSet[Any] = weakref.WeakSet()
# Set by the contrib FastAPI/ASGI instrumentors on an app they wrapped (public attribute of theirs).
_CONTRIB_MARK = "_is_instrumented_by_opentelemetry"
METRICS_PATH = "/metrics"


def adopt_tracer_provider(own: Any, set_global: bool) -> Any:
    """The TracerProvider SizeWise's telemetry should use: the service's SDK provider when it set one
    globally, else ``own`` (a non-global telemetry, for tests and benches, always keeps its own)."""
    host = trace.get_tracer_provider()
    if set_global and isinstance(host, SdkTracerProvider) and host not in _OWN_TRACER_PROVIDERS:
        _ADOPTED_TRACER_PROVIDERS.add(host)
        return host
    _OWN_TRACER_PROVIDERS.add(own)
    return own


@dataclass
class Found:
    """What ``detect`` saw; each field set says what SizeWise does about it (the log line's values)."""

    notes: dict[str, str] = field(default_factory=dict)
    hand_over_contrib: bool = False
    keep_metrics_route: bool = False

    def __bool__(self) -> bool:
        return bool(self.notes)


def detect(app: Any, telemetry: Any) -> Found:
    """Look at the process's providers and at what already wraps ``app``, before SizeWise touches it."""
    found = Found()
    notes = found.notes
    tp = telemetry.tracer_provider
    global_tp = trace.get_tracer_provider()
    if tp in _ADOPTED_TRACER_PROVIDERS:
        notes["tracer_provider"] = "the service's own: SizeWise's spans and span processors added to it"
    elif isinstance(global_tp, SdkTracerProvider) and global_tp is not tp \
            and global_tp not in _OWN_TRACER_PROVIDERS:  # e.g. set after SizeWise's telemetry was built
        notes["tracer_provider"] = "the service's own: kept global; SizeWise's spans go to SizeWise's provider"
    global_mp = metrics.get_meter_provider()
    foreign_meters = isinstance(global_mp, SdkMeterProvider) and global_mp is not telemetry.meter_provider
    if foreign_meters:
        notes["meter_provider"] = "the service's own: kept global and untouched; SizeWise's series on " \
                                  "SizeWise's provider (/metrics, OTLP)"
    contrib = bool(getattr(app, _CONTRIB_MARK, False))
    if contrib:
        if foreign_meters:
            found.hand_over_contrib = True
            notes["fastapi_instrumentor"] = "handed over: removed from this app (uninstrument() puts it back); " \
                                            "SizeWise's layer records the HTTP server spans and metrics"
        else:
            notes["fastapi_instrumentor"] = "kept as the app's HTTP server layer (it records into SizeWise's " \
                                            "providers); SizeWise adds request counting only"
    # FastAPI's native telemetry records whenever global providers exist, SizeWise's included: worth a note
    # when the app gave it providers of its own or the service's providers were already global.
    native = _native_telemetry(app)
    if native is not None and (native or foreign_meters or "tracer_provider" in notes) \
            and (not contrib or found.hand_over_contrib):  # FastAPI defers to a kept contrib instrumentor
        own = f" (it had its own {'/'.join(native)} provider)" if native else ""
        notes["fastapi_native_telemetry"] = f"switched off for this app{own}; SizeWise's layer records " \
                                            "the HTTP server spans and metrics"
    if any(_module_of(m.cls).startswith("prometheus_fastapi_instrumentator") for m in _user_middleware(app)):
        notes["prometheus_fastapi_instrumentator"] = "kept: its own metric names, counted beside SizeWise's"
    if _has_metrics_route(app):
        found.keep_metrics_route = True
        notes["metrics_route"] = f"the app's own GET {METRICS_PATH} kept (it renders the same registry, " \
                                 "SizeWise's series included); SizeWise adds none"
    sentry = _sentry_integration()
    if sentry:
        notes["sentry"] = f"kept ({sentry} integration): its transactions are not OTel spans; unhandled " \
                          "exceptions still reach it"
    return found


def _native_telemetry(app: Any) -> list[str] | None:
    """When FastAPI's native telemetry would record this app's requests: the providers the app gave it."""
    if not native_telemetry_enabled(app):
        return None
    config = native_telemetry_config(app) or {}
    return [kind for kind in ("tracer", "meter", "logger") if config.get(f"{kind}_provider") is not None]


def _user_middleware(app: Any) -> list[Any]:
    return list(getattr(app, "user_middleware", ()) or ())


def _module_of(obj: Any) -> str:
    return getattr(obj, "__module__", "") or ""


def _has_metrics_route(app: Any) -> bool:
    for route in getattr(getattr(app, "router", None), "routes", ()):
        methods = getattr(route, "methods", None)
        if getattr(route, "path", None) == METRICS_PATH and (methods is None or "GET" in methods):
            return True
    return False


def _sentry_integration() -> str | None:
    """The active Sentry web integration, when sentry-sdk is imported and initialised (never imported here)."""
    sentry = sys.modules.get("sentry_sdk")
    get_client = getattr(sentry, "get_client", None)
    if get_client is None:
        return None
    try:
        client = get_client()
        if not client.is_active():
            return None
        return next((name for name in ("fastapi", "starlette", "asgi") if client.get_integration(name)), None)
    except Exception:
        return None


def hand_over_contrib(app: Any) -> Callable[[], None]:
    """Remove the contrib FastAPIInstrumentor from ``app``; returns what puts it back as it was."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    keys = ("build_middleware_stack", "_original_build_middleware_stack")
    saved = {k: app.__dict__[k] for k in keys if k in app.__dict__}
    middleware = list(app.user_middleware)
    FastAPIInstrumentor.uninstrument_app(app)

    def restore() -> None:
        for k in keys:
            app.__dict__.pop(k, None)
        app.__dict__.update(saved)
        app.user_middleware[:] = middleware
        setattr(app, _CONTRIB_MARK, True)
        app.middleware_stack = None  # rebuilt on the next request, with it

    return restore
