"""The instrumented SizeWise HVAC demo service.

``sizewise_otel.demo:app`` is built on first access from the environment's settings, so
``uvicorn``/``gunicorn``/``opentelemetry-instrument`` can serve it by name. ``service`` builds
the app (``hvac`` calculations, ``store`` persistence, ``sessions``, ``limits``), ``materials`` is
the second service it calls, ``runner`` serves both for ``sizewise-otel demo`` with ``load`` as
traffic, and ``console``/``logsetup`` shape what the demo prints.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "create_app"]


def create_app(settings: Any = None) -> Any:
    from sizewise_otel.demo.service import create_app as _create

    return _create(settings)


_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
