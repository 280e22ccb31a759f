"""Moved to :mod:`sizewise_otel.instruments.sql`; kept for importers elsewhere (bench)."""

from sizewise_otel.instruments.sql import instrument_engine, operation_name, sanitize_sql

__all__ = ["instrument_engine", "operation_name", "sanitize_sql"]
