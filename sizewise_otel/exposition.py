"""Moved to :mod:`sizewise_otel.fastpath.exposition`; kept for importers outside the package (bench)."""

from sizewise_otel.fastpath.exposition import FastPrometheusMetricReader, generate_latest

__all__ = ["FastPrometheusMetricReader", "generate_latest"]
