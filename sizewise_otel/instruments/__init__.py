"""Instrumentation for each kind of traffic, and the one registry of what has been instrumented.

``registry`` keeps every idempotence marker (this app's HTTP layer, this engine, this Redis client,
the process-wide httpx and system-metrics instrumentors) and the undo actions that
``Instrumentation.uninstrument()`` runs, so instrumenting twice is harmless and undoing restores
what was there before. The traffic modules (HTTP server, SQLAlchemy, Redis, cache, HTTP client,
system) use public OpenTelemetry APIs plus :mod:`sizewise_otel.fastpath`'s public functions.
"""
