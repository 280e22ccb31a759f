"""Moved to :mod:`sizewise_otel.instruments.cache`; kept for importers elsewhere (demo, bench, tests)."""

from sizewise_otel.instruments.cache import InstrumentedCache, LocalLRU

__all__ = ["InstrumentedCache", "LocalLRU"]
