"""What ``bench.apps`` and ``bench.demo_apps`` share: serving one variant under uvicorn, and the
module-level ``app`` gunicorn imports (one app per worker, the variant from ``BENCH_VARIANT``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def module_app(build: Callable[[str], Any], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds ``app`` on first access (PEP 562) and keeps it."""
    def getattr_(name: str) -> Any:
        if name == "app":
            app = namespace["app"] = build(os.environ.get("BENCH_VARIANT", "bare"))
            return app
        raise AttributeError(name)
    return getattr_


def run(build: Callable[[str], Any], argv: list[str]) -> None:
    """``python -m bench.<module> VARIANT PORT``: the variant on loopback, quiet."""
    import uvicorn

    variant, port = argv[0], int(argv[1])
    uvicorn.run(build(variant), host="127.0.0.1", port=port, log_level="critical", access_log=False,
                lifespan="on")
