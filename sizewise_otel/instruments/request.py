"""Facts about a request that every layer must compute the same way.

- :data:`Scope`: the ASGI scope type.
- :func:`route_template`: the matched route's template, mount prefixes included, for the HTTP
  series, the server span and the error tracker alike; never the raw path.
- :func:`error_type`: ``error.type`` for an exception, so one exception carries one label on the
  HTTP, DB and Redis series and in the error tracker: the class's qualified name, prefixed with its
  module outside ``builtins`` / ``__main__`` (bounded by code, not by traffic).
- :func:`header_value` / :func:`headers_named`: ASGI header bytes to text (latin-1, as HTTP/1.1
  defines them; ASGI names are already lower-case).
- The scope keys the HTTP layers set: :data:`ENTRY_ROOT_PATH` (the ``root_path`` before routing, so
  later readers can tell the mount prefix) and :data:`NATIVE_TELEMETRY_KEY`.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from sizewise_otel.fastpath import BoundedCache

Scope = MutableMapping[str, Any]

# The app's root_path when the HTTP layer saw the request, before any Mount appended its prefix.
ENTRY_ROOT_PATH = "sizewise.root_path"
# FastAPI's native telemetry skips a request whose scope has this key: set by the HTTP layers, so a
# FastAPI app mounted inside an instrumented app does not record its requests a second time.
NATIVE_TELEMETRY_KEY = "fastapi.telemetry"

_error_types: BoundedCache[type, str] = BoundedCache(4096)


def error_type(exc: BaseException) -> str:
    """``error.type`` for an exception (see the module docstring)."""
    cls = type(exc)
    name = _error_types.get(cls)
    if name is None:
        module = cls.__module__
        name = _error_types.put(cls, cls.__qualname__ if module in (None, "builtins", "__main__")
                                else f"{module}.{cls.__qualname__}")
    return name


def route_template(scope: Scope, root_path: str | None = None) -> str | None:
    """The matched route's template, read after routing; ``None`` when nothing matched.

    Routes inside a ``Mount`` carry paths relative to it, so the mount prefix (what the router
    appended to ``root_path`` since ``root_path`` -- by default the one recorded at
    :data:`ENTRY_ROOT_PATH`) is put back in front. A mount whose app is not a router (static
    files) is reported as ``<prefix>/{path}``.
    """
    route = scope.get("route")
    if route is None:
        route = _matched_route(scope)
        if route is None:
            return None
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if root_path is None:
        root_path = scope.get(ENTRY_ROOT_PATH, "")
    current_root = scope.get("root_path", "")
    prefix = current_root[len(root_path):] if current_root != root_path and current_root.startswith(root_path) \
        else ""
    if hasattr(route, "routes") and hasattr(route, "app") and not hasattr(route, "endpoint"):
        # A Mount that handled the request itself: its own matched path is already in the prefix.
        return (prefix or path).rstrip("/") + "/{path}"
    return prefix + path if prefix else path


def _matched_route(scope: Scope) -> Any:
    """The route of the innermost app that fully matches, for routers that do not set ``scope["route"]``
    (a plain Starlette sub-app before Starlette put it there); ``None`` when none does."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", app), "routes", None)
    if not routes:
        return None
    try:
        from starlette.routing import Match

        return next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)
    except Exception:  # a foreign router: no template rather than a failed request
        return None


def header_value(raw: bytes) -> str:
    return raw.decode("latin-1")


def headers_named(headers: Iterable[tuple[bytes, bytes]], names: frozenset[str],
                  max_len: int | None = None) -> dict[str, str]:
    """The headers among ``names`` (lower-case), decoded, the last one of a repeated name winning."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = header_value(raw_name).lower()
        if name in names:
            value = header_value(raw_value)
            out[name] = value[:max_len] if max_len is not None else value
    return out
