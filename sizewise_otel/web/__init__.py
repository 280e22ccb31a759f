"""The HTTP surface that belongs to no single component.

``auth`` is the access control every router shares: API keys by role (viewer < admin), compared in
constant time, with one audit line per access and the ``/metrics`` bearer token. ``metrics`` is the
``GET /metrics`` route ``instrument()`` adds (the exposition itself lives in
:mod:`sizewise_otel.fastpath.exposition`). ``coexist`` looks at what a service already has (its own
providers, FastAPIInstrumentor, FastAPI's native telemetry, a ``/metrics`` route) before ``instrument()``
changes anything, and says what it keeps or hands over. The components' own routes are in their ``api``
modules.
"""
