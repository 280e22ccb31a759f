"""The demo service, instrumented and not, for the realistic-route rows.

``python -m bench.demo_apps VARIANT PORT`` (uvicorn) or ``bench.demo_apps:app`` with
``BENCH_VARIANT`` (gunicorn). ``sizewise`` is ``sizewise_otel.demo:app`` exactly as shipped
(``instrument()`` at defaults). ``bare`` is the same module's ``create_app`` with ``instrument()``
and ``InstrumentedCache`` replaced by plain stand-ins before it runs: the routes, the body limit,
the store (SQLAlchemy on PostgreSQL) and the Redis client are the demo's own, only the telemetry
is gone. Settings come from the environment (``DATABASE_URL``, ``REDIS_URL``) either way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from bench import serve

LABELS = {
    "bare": "demo without telemetry (same routes, store and Redis client)",
    "sizewise": "demo as shipped (instrument() defaults)",
}
CALCULATE_PATH = "/api/hvac/calculate"


class _NoInstrument:
    def add(self, *_: Any, **__: Any) -> None: ...

    def record(self, *_: Any, **__: Any) -> None: ...


class _NoTelemetry:
    def instrument(self, _name: str) -> _NoInstrument:
        return _NoInstrument()


@dataclass
class _Handle:
    telemetry: _NoTelemetry = field(default_factory=_NoTelemetry)
    tracker: Any = None


class PlainCache:
    """The demo cache's get/set on the bare client: no metrics, no spans, no breaker."""

    def __init__(self, _telemetry: Any, client: Any, *, ttl_seconds: int = 300) -> None:
        self.client, self.ttl = client, ttl_seconds

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get(key)
        except Exception:
            return None

    def set(self, key: str, value: bytes) -> bool:
        try:
            self.client.set(key, value, ex=self.ttl)
            return True
        except Exception:
            return False


def build(variant: str) -> Any:
    if variant == "sizewise":
        from sizewise_otel.demo import create_app

        return create_app()
    if variant == "bare":
        from sizewise_otel.demo import service

        service.instrument = lambda app, **_: _Handle()  # type: ignore[assignment]
        service.InstrumentedCache = PlainCache  # type: ignore[assignment,misc]
        return service.create_app()
    raise SystemExit(f"unknown demo variant {variant!r}; one of {', '.join(LABELS)}")


__getattr__ = serve.module_app(build, globals())  # gunicorn: bench.demo_apps:app


def main(argv: list[str]) -> None:
    serve.run(build, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
