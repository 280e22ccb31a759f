"""SizeWise's endpoints as one ``EndpointGroup`` (web/routes.py): the service's own requests skip them
with one path check, ours answer as before (auth, path params, 405), the precedence is what
``include_router`` gave, the OpenAPI schema still lists them, and ``uninstrument()`` takes them away."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.testclient import TestClient

from sizewise_otel import instrument, instrumentation
from sizewise_otel.errors import reset_error_tracker
from sizewise_otel.settings import Settings, load_settings
from sizewise_otel.web.routes import EndpointGroup

VIEWER_KEY = "group-viewer-key-0123456789"
METRICS_TOKEN = "group-metrics-token-0123456789"
VIEWER = {"Authorization": f"Bearer {VIEWER_KEY}"}
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _settings() -> Settings:
    return load_settings(error_store_url="sqlite://", sizewise_api_keys=f"viewer:{VIEWER_KEY}",
                         sizewise_metrics_token=METRICS_TOKEN)


@pytest.fixture(autouse=True)
def _own_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A tracker built from this module's settings; uninstrument() here keeps the process-wide hooks
    that other tests' apps (still instrumented in this process) rely on."""
    monkeypatch.setattr(instrumentation, "_live_handles", instrumentation._live_handles + 1)
    reset_error_tracker()
    yield
    reset_error_tracker()


def _group(app: Any) -> EndpointGroup:
    (group,) = [r for r in app.router.routes if isinstance(r, EndpointGroup)]
    return group


def _instrumented(before: Callable[[FastAPI], None] | None = None) -> FastAPI:
    """A FastAPI app: ``before`` adds routes ahead of instrument(); ``GET /ping`` is defined after it."""
    app = FastAPI()
    if before is not None:
        before(app)
    instrument(app, settings=_settings())

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "service"}

    return app


def _count_matches(monkeypatch: pytest.MonkeyPatch, routes: list[BaseRoute]) -> dict[str, int]:
    """Wrap each route instance's ``matches`` with a counter (keyed by path and methods)."""
    calls: dict[str, int] = {}
    for route in routes:
        key = f"{sorted(getattr(route, 'methods', None) or ())} {getattr(route, 'path', route)}"
        calls[key] = 0

        def counted(scope: Any, _inner: Any = route.matches, _key: str = key) -> tuple[Match, Any]:
            calls[_key] += 1
            return _inner(scope)

        monkeypatch.setattr(route, "matches", counted)
    return calls


def test_service_route_never_reaches_the_inner_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _instrumented()
    group = _group(app)
    assert len(group.routes) >= 15 and "/errors" in (group.heads or ())
    calls = _count_matches(monkeypatch, group.routes)
    with TestClient(app) as http:
        for _ in range(3):
            r = http.get("/ping")
            assert r.status_code == 200 and r.json() == {"pong": "service"}
        assert http.get("/nowhere").status_code == 404
        assert sum(calls.values()) == 0, {k: n for k, n in calls.items() if n}
        # The counters do count: a path of ours is matched route by route.
        assert http.get("/livez").status_code == 200
    assert calls["['GET'] /livez"] == 1


def test_our_endpoints_answer_with_auth_path_params_and_405() -> None:
    app = _instrumented()
    with TestClient(app) as http:
        assert http.get("/livez").status_code == 200
        assert http.get("/metrics").status_code == 401  # the metrics token is configured
        metrics = http.get("/metrics", headers=SCRAPER)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert http.get("/errors/groups").status_code == 401
        groups = http.get("/errors/groups", headers=VIEWER)
        assert groups.status_code == 200 and groups.json()["groups"] == []
        unknown = http.get(f"/errors/groups/{'f' * 32}", headers=VIEWER)
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/json"
        assert unknown.json() == {"detail": "no such error group"}
        wrong_method = http.post("/livez")
        assert wrong_method.status_code == 405 and wrong_method.json() == {"detail": "Method Not Allowed"}
        assert http.delete("/errors/groups").status_code == 405
        assert http.get("/livez/", follow_redirects=False).status_code == 307  # redirect_slashes still sees it


def test_route_after_instrument_is_shadowed_and_metrics_before_is_kept() -> None:
    def before(app: FastAPI) -> None:
        @app.get("/metrics")
        def own_metrics() -> PlainTextResponse:
            return PlainTextResponse("the service's own /metrics\n")

        @app.get("/readyz")
        def own_readyz() -> dict[str, str]:
            return {"from": "service"}

    app = _instrumented(before)

    @app.get("/health")
    def own_health() -> dict[str, str]:
        return {"from": "service"}

    @app.post("/livez")
    def own_livez_post() -> dict[str, str]:
        return {"from": "service"}

    # web/coexist.py: the app's own GET /metrics is kept and SizeWise adds none.
    assert "/metrics" not in (_group(app).heads or ())
    with TestClient(app) as http:
        own = http.get("/metrics")
        assert own.status_code == 200 and own.text == "the service's own /metrics\n"
        health = http.get("/health")
        # Ours, ahead of the service's (503 when a check of this machine is critical: still ours).
        assert health.status_code in (200, 503) and "from" not in health.json()
        assert "status" in health.json()
        # The group sits where include_router put the routers: after the routes defined before instrument().
        assert http.get("/readyz").json() == {"from": "service"}
        # A method only the service's later route has: ours matched partially, the service's fully.
        assert http.post("/livez").json() == {"from": "service"}


def test_openapi_lists_the_group_routes() -> None:
    app = _instrumented()
    paths = app.openapi()["paths"]
    assert {"/errors/groups", "/errors/groups/{group_id}", "/health", "/livez", "/ping"} <= set(paths)
    assert "/metrics" not in paths  # include_in_schema=False, as before
    assert isinstance(app.router.routes[-2], EndpointGroup)  # the route list is put back after the build
    with TestClient(app) as http:
        served = http.get("/openapi.json").json()["paths"]
    assert {"/errors/groups", "/health", "/ping"} <= set(served)
    assert served["/errors/groups"]["get"]["operationId"] == paths["/errors/groups"]["get"]["operationId"]


def test_service_openapi_override_is_still_used() -> None:
    seen: list[Callable[[], dict[str, Any]]] = []

    def before(app: FastAPI) -> None:
        def custom() -> dict[str, Any]:
            seen.append(custom)
            schema = get_openapi(title="service", version="9.9", routes=app.routes)
            schema["info"]["x-custom"] = True
            return schema

        app.openapi = custom  # type: ignore[method-assign]

    app = _instrumented(before)
    schema = app.openapi()
    assert seen and schema["info"] == {"title": "service", "version": "9.9", "x-custom": True}
    assert {"/errors/groups", "/health", "/ping"} <= set(schema["paths"])
    with TestClient(app) as http:
        assert http.get("/openapi.json").json()["info"]["x-custom"] is True
    assert app.state.sizewise.uninstrument() == []
    assert vars(app)["openapi"] is seen[0]  # the service's function, put back
    after = app.openapi()
    assert after["info"]["x-custom"] is True and "/errors/groups" not in after["paths"]


def test_root_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/api/nowhere")  # keeps the shared /metrics tidy
    app = _instrumented()
    stats = app.state.sizewise.stats
    with TestClient(app, root_path="/api") as http:
        before = stats.total
        assert http.get("/api/livez").status_code == 200  # the path check takes the root path off
        assert stats.total == before  # ... and so does the HTTP layer: /livez under /api is not traffic
        assert http.get("/api/ping").json() == {"pong": "service"}
        assert stats.total == before + 1
        unknown = http.get(f"/api/errors/groups/{'f' * 32}", headers=VIEWER)
        assert unknown.status_code == 404 and unknown.json() == {"detail": "no such error group"}
        assert http.get("/api/nowhere").status_code == 404


def test_url_path_for_our_routes() -> None:
    app = _instrumented()
    assert app.url_path_for("livez") == "/livez"
    assert app.url_path_for("group", group_id="abc") == "/errors/groups/abc"
    assert app.url_path_for("ping") == "/ping"
    with pytest.raises(Exception, match="No route exists"):
        app.url_path_for("no_such_route")


def test_uninstrument_removes_the_group_and_the_openapi_wrapper() -> None:
    app = _instrumented()
    handle = app.state.sizewise
    assert "openapi" in vars(app)
    with TestClient(app) as http:
        assert http.get("/livez").status_code == 200
        assert "/errors/groups" in http.get("/openapi.json").json()["paths"]  # built (and cached) now
        assert handle.uninstrument() == []
        assert not [r for r in app.router.routes if isinstance(r, EndpointGroup)]
        assert http.get("/livez").status_code == 404
        assert http.get("/ping").status_code == 200
        # FastAPI's own method again, and no schema built with our routes left behind.
        assert "openapi" not in vars(app)
        assert app.openapi.__func__ is FastAPI.openapi  # type: ignore[attr-defined]
        served = http.get("/openapi.json").json()["paths"]
        assert "/ping" in served and "/errors/groups" not in served and "/health" not in served


def test_plain_starlette_app() -> None:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)])
    instrument(app, settings=_settings())
    assert isinstance(app.router.routes[-1], EndpointGroup)
    assert "openapi" not in vars(app)

    async def run() -> tuple[int, int, str, int, int, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            livez = await c.get("/livez")  # FastAPI routes without FastAPI's request middleware
            hello_ = await c.get("/hello")
            groups = await c.get("/errors/groups", headers=VIEWER)
            invalid = await c.get("/errors/summary", params={"window_hours": -1}, headers=VIEWER)
            return (livez.status_code, hello_.status_code, hello_.text, groups.status_code,
                    invalid.status_code, invalid.json()["detail"][0]["loc"])

    # A bad query parameter is a 422 with FastAPI's JSON body, as on a FastAPI app (not a 500).
    assert anyio.run(run) == (200, 200, "hello", 200, 422, ["query", "window_hours"])
    assert app.url_path_for("livez") == "/livez"


def test_path_is_the_matched_inner_routes_for_code_that_matches_app_routes_itself() -> None:
    # The contrib FastAPI instrumentor (every release) matches app.routes and reads the matched route's path.
    group = _group(_instrumented())
    scope = {"type": "http", "method": "GET", "path": "/errors/groups/abc", "root_path": "", "headers": [],
             "query_string": b""}
    assert group.matches(scope)[0] is Match.FULL
    assert group.path == "/errors/groups/{group_id}"


def test_the_contrib_instrumentor_reads_http_route_of_our_endpoints_through_the_group() -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = FastAPI()
    # zero-code mode's state: the contrib owns the app's HTTP telemetry, it matches app.routes itself
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    try:
        instrument(app, settings=_settings())
        assert _group(app).routes  # the group is there on this path too
        with TestClient(app) as http:
            assert http.get(f"/errors/groups/{'f' * 32}", headers=VIEWER).status_code == 404
        routes = {s.attributes.get("http.route") for s in spans.get_finished_spans() if s.kind.name == "SERVER"}
        assert routes == {"/errors/groups/{group_id}"}
        assert app.state.sizewise.uninstrument() == []
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
