"""What the components share about running inside a long-lived server process.

``tasks`` stops a component's background asyncio task cleanly (health checks, the alert
evaluator and its notifiers, the dashboard sampler all use it); ``heap`` freezes the start-up heap
so the cyclic GC's full collections do not pause the event loop (``SIZEWISE_GC_FREEZE``); ``fork``
gives each forked worker (gunicorn ``--preload``) its own ``service.instance.id``.
"""
