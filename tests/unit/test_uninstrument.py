"""``handle.uninstrument()`` returns the app, its engine and Redis client to bare; instrument() works again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool
from starlette.testclient import TestClient

from sizewise_otel import instrument, instrumentation
from sizewise_otel.instruments.registry import MARKS
from sizewise_otel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}

    return app


def _methods(dialect: object) -> dict[str, object]:
    """What the dialect instance holds in place of its class's execute methods."""
    return {k: v for k, v in vars(dialect).items() if k.startswith("do_execute")}


def test_uninstrument_restores_the_app_engine_and_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other tests' apps stay instrumented in this process: keep the process-wide hooks (see below).
    monkeypatch.setattr(instrumentation, "_live_handles", instrumentation._live_handles + 1)
    app = _app()
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    client = redis.Redis(host="127.0.0.1", port=1)  # never connected: only its methods are wrapped
    bare = {
        "middleware": list(app.user_middleware), "routes": list(app.router.routes),
        "lifespan": app.router.lifespan_context, "native": dict(getattr(app, "_telemetry", {})),
        "dialect": _methods(engine.dialect), "client": dict(vars(client)),
    }
    settings = Settings(error_store_url="sqlite://")
    handle = instrument(app, engine=engine, redis=client, settings=settings)
    with TestClient(app) as http:  # runs the lifespan: components start
        assert http.get("/items/1").status_code == 200
        assert http.get("/metrics").status_code == 200
        assert vars(engine.dialect)["do_execute"] is not None and "execute_command" in vars(client)
        assert handle.uninstrument() == []
        assert http.get("/metrics").status_code == 404  # served by the bare app now
        assert http.get("/items/2").status_code == 200
    assert list(app.user_middleware) == bare["middleware"]
    assert [id(r) for r in app.router.routes] == [id(r) for r in bare["routes"]]
    assert app.router.lifespan_context is bare["lifespan"]
    assert dict(getattr(app, "_telemetry", {})) == bare["native"]  # FastAPI 0.165+: native telemetry
    assert _methods(engine.dialect) == bare["dialect"] == {}  # the class's methods again
    assert dict(vars(client)) == bare["client"]
    assert not hasattr(app.state, "sizewise") and not hasattr(app.state, "sizewise_keyring")
    assert not MARKS.marked(app, "http.server") and not MARKS.marked(engine, "sqlalchemy")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert handle.uninstrument() == []  # twice is harmless

    again = instrument(app, engine=engine, redis=client, settings=settings)
    assert again is not handle
    with TestClient(app) as http:
        assert http.get("/items/3").status_code == 200
        assert '"/items/{item_id}"' in http.get("/metrics").text  # (label order: other tests' apps share it)
    assert again.uninstrument() == []
    assert list(app.user_middleware) == bare["middleware"]


PROCESS_SCRIPT = textwrap.dedent('''
    import json
    import logging
    from fastapi import FastAPI
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from sqlalchemy import create_engine, text
    from starlette.testclient import TestClient

    from sizewise_otel import instrument
    from sizewise_otel.errors.logging_handler import SERVER_LOGGERS
    from sizewise_otel.fastpath import enabled
    from sizewise_otel.settings import Settings
    from sizewise_otel.telemetry import get_telemetry

    app = FastAPI()
    app.get("/x")(lambda: {})
    engine = create_engine("sqlite://")
    telemetry = get_telemetry(Settings(error_store_url="sqlite://"))
    reader = telemetry.prometheus_reader
    sdk_collect = telemetry.meter_provider._measurement_consumer.collect
    def hooked():  # the reader's collect callback is not the SDK's own (the fast path's reader hook)
        return reader._collect != sdk_collect
    hooked_with_telemetry = hooked()  # Telemetry's lean business instruments hook it already
    def filters():
        targets = [logging.getLogger(n) for n in SERVER_LOGGERS] + logging.getLogger().handlers
        return sum(len(t.filters) for t in targets)

    bare_filters = filters()
    handle = instrument(app, engine=engine, settings=telemetry.settings)
    with TestClient(app) as http:  # the lifespan starts the tracker: log scrubbing goes on
        http.get("/x")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        during = {"hooked": hooked(),
                  "httpx": HTTPXClientInstrumentor().is_instrumented_by_opentelemetry,
                  "log_filters": filters() > bare_filters}
    handle.uninstrument()
    after = {"hooked": hooked(),
             "httpx": HTTPXClientInstrumentor().is_instrumented_by_opentelemetry,
             "log_filters": filters() > bare_filters,
             # SDK 1.34+ caches its tracers; before, the telemetry's own tracer stands for them
             "id_generators": sorted({type(t.id_generator).__name__ for t in
                                      getattr(telemetry.tracer_provider, "_tracers", {}).values()
                                      or [telemetry.tracer]})}
    again = instrument(app, engine=engine, settings=telemetry.settings)
    with TestClient(app) as http:
        http.get("/x")
        text_ = http.get("/metrics").text
    print("RESULT " + json.dumps({"during": during, "after": after, "fast": enabled(),
                                  "with_telemetry": hooked_with_telemetry,
                                  "again": 'http_route="/x"' in text_}))
''')


def test_process_wide_hooks_go_with_the_last_handle() -> None:
    """The reader hook, the tracers' id generators, httpx and the tracker's log filter, in a fresh
    interpreter (one handle, so it is the last)."""
    done = subprocess.run([sys.executable, "-c", PROCESS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    # The reader hook is the fast path's (the lean histogram); the public path installs none.
    assert result["with_telemetry"] == result["fast"]
    assert result["during"] == {"hooked": result["fast"], "httpx": True, "log_filters": True}
    assert result["after"] == {"hooked": False, "httpx": False, "log_filters": False,
                               "id_generators": ["RandomIdGenerator"]}
    assert result["again"]
