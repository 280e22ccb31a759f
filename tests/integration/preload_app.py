"""An app built by a factory, for ``gunicorn --preload 'tests.integration.preload_app:create_app()'`` and
``uvicorn --factory tests.integration.preload_app:create_app``.

``create_app()`` instruments the app where it runs: in the gunicorn master when preloaded, before
the workers fork. Each process that builds or serves the app writes ``<role>-<pid>.json`` into
``SHAPES_IDENTITY_DIR`` (``factory`` at build time, ``worker`` when its lifespan starts) with the
``service.instance.id`` its telemetry carries at that moment, so the test can tell which exported
data came from which process.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from sizewise_otel import instrument


def _write_identity(role: str, handle: Any) -> None:
    folder = os.environ.get("SHAPES_IDENTITY_DIR")
    if not folder:
        return
    identity = {"role": role, "pid": os.getpid(),
                "instance": handle.telemetry.resource.attributes.get("service.instance.id")}
    path = Path(folder) / f"{role}-{os.getpid()}.json"
    path.with_suffix(".tmp").write_text(json.dumps(identity))
    path.with_suffix(".tmp").rename(path)  # the test never reads a half-written file


def create_app() -> FastAPI:
    handle: Any = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _write_identity("worker", handle)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/work/{n}")
    async def work(n: int) -> dict[str, int]:
        return {"n": n, "pid": os.getpid()}

    handle = instrument(app)
    _write_identity("factory", handle)
    return app
