"""Small reads of SDK and contrib internals that the rest of the package needs by name.

Each function answers one question the public API does not, and degrades to a safe answer when the
installed release moved the name (checked up front by :mod:`sizewise_otel.fastpath.detect`).
"""

from __future__ import annotations

import importlib
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro

try:  # the configurator base that ``opentelemetry_configurator`` entry points subclass
    from opentelemetry.sdk._configuration import _BaseConfigurator
except ImportError:  # pragma: no cover - an SDK that moved it: zero-code mode loses only the hook
    class _BaseConfigurator:  # type: ignore[no-redef]
        def configure(self, **kwargs: Any) -> None:
            self._configure(**kwargs)


class Distro(BaseDistro):
    """An ``opentelemetry_distro`` entry point: override :meth:`configure_defaults`."""

    def _configure(self, **kwargs: Any) -> None:  # BaseDistro's abstract hook
        self.configure_defaults(**kwargs)

    def configure_defaults(self, **kwargs: Any) -> None:
        return None


class Configurator(_BaseConfigurator):
    """An ``opentelemetry_configurator`` entry point: override :meth:`configure_providers`."""

    def _configure(self, **kwargs: Any) -> None:  # _BaseConfigurator's abstract hook
        self.configure_providers(**kwargs)

    def configure_providers(self, **kwargs: Any) -> None:
        return None


# What the contrib instrumentation leaves on an object (an app, a client) it instrumented.
_CONTRIB_MARK = "_is_instrumented_by_opentelemetry"


def schema_url(signal: str) -> str | None:
    """The semconv schema URL the contrib instrumentors use for ``"http"`` or ``"database"``."""
    try:
        from opentelemetry.instrumentation._semconv import _get_schema_url, _StabilityMode

        return _get_schema_url(_StabilityMode.HTTP if signal == "http" else _StabilityMode.DATABASE)
    except (ImportError, AttributeError):
        return None


def contrib_scope(package: str, signal: str) -> tuple[str, str, str | None]:
    """(name, version, schema URL) of a contrib instrumentor's scope; raises ImportError if absent."""
    version = importlib.import_module(f"opentelemetry.instrumentation.{package}.version").__version__
    return f"opentelemetry.instrumentation.{package}", version, schema_url(signal)


def instrumented_by_contrib(obj: Any) -> bool:
    """True when a contrib instrumentor already wrapped ``obj`` (an app or a client instance)."""
    return bool(getattr(obj, _CONTRIB_MARK, False))


def exporter_preferences(exporter: Any) -> dict[str, Any]:
    """The temporality and aggregation preferences a ``MetricExporter`` was built with (for wrappers)."""
    return {"preferred_temporality": getattr(exporter, "_preferred_temporality", None),
            "preferred_aggregation": getattr(exporter, "_preferred_aggregation", None)}
