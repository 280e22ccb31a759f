"""Instrumentation for each kind of traffic, one module each, and what they share.

- ``http_server``: the lean semconv HTTP server layer (middleware), and its wiring into an app
  (the contrib FastAPI/ASGI instrumentor on the public path); ``http_stats``: request counts for
  the error-rate gauge and the error tracker hand-off.
- ``http_client``: httpx, through the contrib instrumentor.
- ``sql``: SQLAlchemy statements (spans and ``db.client.operation.duration``), pool gauges.
- ``redis``: Redis client spans; ``redis_info``: the server's memory, evictions and keyspace hits from
  ``INFO`` (one read per 30 s tier); ``cache``: the cache facade and its ``sizewise.cache.*`` signals.
- ``system`` / ``container``: process, host and cgroup gauges.
- ``request``: the request facts every layer computes the same way (route template, error.type) and
  the captured headers (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``).
- ``registry``: every idempotence marker and the undo actions ``uninstrument()`` runs.

They use public OpenTelemetry APIs plus :mod:`sizewise_otel.fastpath`'s public functions.
"""
