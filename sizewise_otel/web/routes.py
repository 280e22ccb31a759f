"""SizeWise's endpoints in the host app, behind one path check the service's requests pay for.

Starlette and FastAPI match a request against the app's routes in order. Added as ordinary
routes (or with ``include_router``, which FastAPI >= 0.150 keeps as one route that re-matches
each route inside it), SizeWise's twenty endpoints cost every request of the service that is
matched after them (``python bench/figures.py routing`` prints what, with FastAPI's included
routers and with this group, against a bare app). :class:`EndpointGroup` stands
in their place, at the same position (so the precedence is what ``include_router`` gave): one
set lookup of the path's first segment answers "not ours" for the service's requests, and only
a path that could be ours is matched route by route, with the routes' own ``matches``.

The OpenAPI schema still lists them: :func:`add_endpoints` wraps ``app.openapi`` so that the
schema is built with the group's routes in its place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from contextvars import ContextVar
from typing import Any

from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.routing import BaseRoute, Match, NoMatchFound

from sizewise_otel.instruments.registry import Undo
from sizewise_otel.instruments.request import route_path

# Where the route that matched waits in the scope between ``matches`` and ``handle`` (the router
# copies the child scope into the request's scope in between).
_MATCHED_KEY = "sizewise.endpoint"
# The route a group matched last in this context (task or thread): see EndpointGroup.path.
_last_matched: ContextVar[BaseRoute | None] = ContextVar("sizewise_endpoint_matched", default=None)
# Set by FastAPI's AsyncExitStackMiddleware on each request of a FastAPI app; its routes require it.
_FILE_STACK = "fastapi_middleware_astack"
_HANDLERS_KEY = "starlette.exception_handlers"  # (by exception class, by status code): the app's handlers


def _head(path: str) -> str:
    """The first path segment with its slash: ``/errors`` for ``/errors/groups/{group_id}``."""
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


class EndpointGroup(BaseRoute):
    """A fixed list of routes matched as if each stood in the app's route list at this position."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)
        paths = [getattr(r, "path", None) for r in self.routes]
        # A route without a literal first segment (none of SizeWise's) turns the shortcut off.
        self.heads: frozenset[str] | None = frozenset(_head(p) for p in paths if isinstance(p, str)) \
            if all(isinstance(p, str) and p.startswith("/") and "{" not in _head(p) for p in paths) else None

    def matches(self, scope: Any) -> tuple[Match, dict[str, Any]]:
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        if self.heads is not None and _head(route_path(scope)) not in self.heads:
            return Match.NONE, {}
        partial: tuple[BaseRoute, dict[str, Any]] | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                _last_matched.set(route)
                return Match.FULL, {**child, _MATCHED_KEY: route}
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            _last_matched.set(partial[0])
            return Match.PARTIAL, {**partial[1], _MATCHED_KEY: partial[0]}
        return Match.NONE, {}

    @property
    def path(self) -> str:
        """The path template of the route this group last matched in this context ("" before any).

        For code that matches ``app.routes`` itself and then reads the matched route's ``path`` (the
        contrib FastAPI instrumentor's ``http.route``, in every release): it gets the inner route's.
        """
        route = _last_matched.get()
        return str(getattr(route, "path", "")) if any(route is r for r in self.routes) else ""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        route = scope.pop(_MATCHED_KEY, None)
        if route is None:  # called without a match (a foreign router): match now
            match, child = self.matches(scope)
            if match is Match.NONE:
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
                return
            scope.update(child)
            route = scope.pop(_MATCHED_KEY)
        if _FILE_STACK in scope or scope["type"] != "http":
            await route.handle(scope, receive, send)
            return
        # A plain Starlette app: FastAPI's routes need the exit stack FastAPI's own middleware gives
        # every request (their handlers assert it), and a handler for their validation errors (422
        # JSON, as on FastAPI, instead of a 500) unless the app has its own.
        handlers, status_handlers = scope.get(_HANDLERS_KEY) or ({}, {})
        if RequestValidationError not in handlers:
            scope[_HANDLERS_KEY] = ({**handlers, RequestValidationError: request_validation_exception_handler},
                                    status_handlers)
        async with AsyncExitStack() as stack:
            scope[_FILE_STACK] = stack
            await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        return f"EndpointGroup({len(self.routes)} routes: {', '.join(sorted(self.heads or ()))})"


def expanded(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with every group replaced by the routes it holds (what the app would have had)."""
    out: list[BaseRoute] = []
    for route in routes:
        out.extend(route.routes if isinstance(route, EndpointGroup) else [route])
    return out


def add_endpoints(app: Any, routers: Iterable[Any], undo: Undo) -> EndpointGroup:
    """The routers' routes, as one :class:`EndpointGroup` appended to the app's routes.

    Not ``include_router``: an ``APIRouter``'s routes already carry its prefix, tags and
    dependencies, and SizeWise's routers have no lifespan to merge.
    """
    routes = [route for router in routers for route in router.routes]
    group = EndpointGroup(routes)
    app.router.routes.append(group)

    def remove() -> None:
        app.router.routes[:] = [r for r in app.router.routes if r is not group]

    undo.add("routes", remove)
    if callable(getattr(app, "openapi", None)):
        _list_in_openapi(app, undo)
    return group


def _list_in_openapi(app: Any, undo: Undo) -> None:
    """``app.openapi()`` built from the app's routes with the groups expanded (FastAPI walks the
    route list itself and would not look inside a group). A schema the app already built is kept;
    one built with the group in it goes with the group."""
    inner = app.openapi  # FastAPI's method, or the service's own override (it reads app.routes too)
    own = "openapi" in vars(app)  # the service had set its own function on the app
    built = getattr(app, "openapi_schema", None)

    def openapi() -> Any:
        if getattr(app, "openapi_schema", None):
            return app.openapi_schema
        routes = app.router.routes
        saved = list(routes)
        routes[:] = expanded(saved)  # synchronous: no request is routed until it is put back
        try:
            return inner()
        finally:
            routes[:] = saved

    app.openapi = openapi

    def restore() -> None:
        if vars(app).get("openapi") is openapi:
            if own:
                app.openapi = inner
            else:
                del app.openapi
        if getattr(app, "openapi_schema", None) is not built:  # cached since, listing our routes
            app.openapi_schema = built

    undo.add("openapi", restore)
