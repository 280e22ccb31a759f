"""One computation of the request facts every layer reports: route template, error.type, headers."""

from __future__ import annotations

import sqlite3

import redis
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from sizewise_otel import instrument
from sizewise_otel.errors.tracker import request_context
from sizewise_otel.instruments.request import error_type, headers_named, route_template
from sizewise_otel.settings import Settings


class Local(Exception):
    pass


def test_error_type_is_qualified_outside_builtins() -> None:
    assert error_type(ValueError("x")) == "ValueError"
    assert error_type(sqlite3.OperationalError("x")) == "sqlite3.OperationalError"
    assert error_type(redis.ResponseError("x")) == "redis.exceptions.ResponseError"
    assert error_type(Local()) == f"{__name__}.Local"


def test_headers_are_decoded_once_and_filtered() -> None:
    raw = [(b"user-agent", b"probe/1"), (b"cookie", b"a=1"), (b"x-request-id", b"\xe9" * 600)]
    assert headers_named(raw, frozenset({"user-agent", "x-request-id"}), max_len=3) == {
        "user-agent": "pro", "x-request-id": "\xe9\xe9\xe9"}


def test_tracker_and_http_layer_see_the_mounted_route_template() -> None:
    app = FastAPI()
    sub = FastAPI()
    seen: dict[str, object] = {}

    @sub.get("/boom/{n}")
    def boom(n: int, request: Request) -> dict:
        seen["tracker"] = request_context(request.scope).endpoint
        seen["layer"] = route_template(request.scope)
        return {}

    app.mount("/sub", sub)
    handle = instrument(app, settings=Settings(error_store_url="sqlite://"))
    try:
        with TestClient(app) as http:
            assert http.get("/sub/boom/3").status_code == 200
    finally:
        handle.uninstrument()
    assert seen == {"tracker": "/sub/boom/{n}", "layer": "/sub/boom/{n}"}
