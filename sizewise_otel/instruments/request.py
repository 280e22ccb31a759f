"""Facts about a request that every layer must compute the same way.

- :data:`Scope`: the ASGI scope type.
- :func:`route_template`: the matched route's template, mount prefixes included, for the HTTP
  series, the server span and the error tracker alike; never the raw path.
- :func:`error_type`: ``error.type`` for an exception, so one exception carries one label on the
  HTTP, DB and Redis series and in the error tracker: the class's qualified name, prefixed with its
  module outside ``builtins`` / ``__main__`` (bounded by code, not by traffic).
- :func:`header_value` / :func:`headers_named`: ASGI header bytes to text (latin-1, as HTTP/1.1
  defines them; ASGI names are already lower-case).
- :func:`excluded_urls` / :func:`request_url`: the standard ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (or
  ``OTEL_PYTHON_EXCLUDED_URLS``) regexes, matched against the request URL as the contrib instrumentors do.
- :func:`header_capture`: the standard ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` /
  ``_SERVER_RESPONSE`` / ``_SANITIZE_FIELDS``, applied to the SERVER span as the contrib ASGI middleware does.
- The scope keys the HTTP layers set: :data:`ENTRY_ROOT_PATH` (the ``root_path`` before routing, so
  later readers can tell the mount prefix) and :data:`NATIVE_TELEMETRY_KEY`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.util.http import (
    ExcludeList,
    SanitizeValue,
    get_custom_headers,
    normalise_request_header_name,
    normalise_response_header_name,
    parse_excluded_urls,
)

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


def route_path(scope: Scope) -> str:
    """The path as the app's routes see it: under a ``root_path`` (a proxy prefix), without it, so
    ``/api/livez`` is the unmeasured ``/livez`` of an app served at ``/api``."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):]
    return path


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
    if not hasattr(route, "endpoint") and hasattr(route, "routes") and hasattr(route, "app"):  # (a route has one)
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


def excluded_urls_setting() -> str:
    """The raw comma-separated regexes, the FastAPI-specific variable first (as the contrib reads them)."""
    return os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", ""))


def excluded_urls() -> ExcludeList | None:
    """The configured excluded URLs, or None when none are set (so a request pays nothing)."""
    raw = excluded_urls_setting()
    return parse_excluded_urls(raw) if raw.strip() else None


def request_url(scope: Scope) -> str:
    """``scheme://host[:port]/root_path+path``, the string the contrib ASGI middleware matches exclusions on."""
    host, port = (scope.get("server") or ("0.0.0.0", 80))[:2]
    netloc = host if port in (80, None) else f"{host}:{port}"
    return f"{scope.get('scheme', 'http')}://{netloc}{scope.get('root_path', '')}{scope.get('path', '')}"


# The variable names as opentelemetry-util-http spells them (its constants are missing from some releases).
CAPTURE_REQUEST_HEADERS = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"
CAPTURE_RESPONSE_HEADERS = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE"
SANITIZE_HEADER_FIELDS = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"


def _decode(raw: bytes) -> str:
    # As the contrib ASGI middleware decodes header items for this purpose.
    try:
        return raw.decode("utf-8")
    except ValueError:
        return raw.decode("unicode_escape")


@dataclass(frozen=True)
class HeaderCapture:
    """The configured header regexes: captured headers become SERVER span attributes
    (``http.request.header.<name>`` / ``http.response.header.<name>``, lists of strings, values
    of sanitized fields ``[REDACTED]``), computed by opentelemetry-util-http as the contrib does."""

    request: tuple[str, ...]
    response: tuple[str, ...]
    sanitize: SanitizeValue

    def attributes(self, headers: Iterable[tuple[bytes, bytes]], regexes: tuple[str, ...],
                   normalise: Callable[[str], str]) -> dict[str, list[str]]:
        if not regexes:
            return {}
        found: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in headers:
            found[_decode(name)].append(_decode(value))
        return self.sanitize.sanitize_header_values(found, list(regexes), normalise) if found else {}

    def wrap(self, span: Any, scope: Scope,
             send: Callable[[MutableMapping[str, Any]], Awaitable[None]]
             ) -> Callable[[MutableMapping[str, Any]], Awaitable[None]]:
        """Put the request's captured headers on the (recording) ``span`` now; return ``send`` wrapped to
        add the response's when it starts."""
        captured = self.attributes(scope.get("headers") or (), self.request, normalise_request_header_name)
        if captured:
            span.set_attributes(captured)
        if not self.response:
            return send

        async def send_capturing(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and span.is_recording():
                response = self.attributes(message.get("headers") or (), self.response,
                                           normalise_response_header_name)
                if response:
                    span.set_attributes(response)
            await send(message)

        return send_capturing


def header_capture() -> HeaderCapture | None:
    """The capture the environment asks for, or ``None`` when it asks for none (a request pays nothing)."""
    request = tuple(get_custom_headers(CAPTURE_REQUEST_HEADERS))
    response = tuple(get_custom_headers(CAPTURE_RESPONSE_HEADERS))
    if not request and not response:
        return None
    return HeaderCapture(request, response, SanitizeValue(get_custom_headers(SANITIZE_HEADER_FIELDS)))
