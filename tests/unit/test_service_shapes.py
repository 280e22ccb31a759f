"""The shapes real services have, under ``instrument(app)``, on the fast path and on the public path.

Each (mode, shape) runs once in a fresh interpreter (tests/unit/service_shapes_probe.py): the
process's providers and views are built for one mode. The uvicorn ``--factory`` and gunicorn
``--preload`` shapes run real servers: tests/integration/test_gunicorn_preload.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.servers import ROOT, clean_env
from tests.unit.service_shapes_probe import CHUNK_PAUSE, CHUNKS

MODES = ["fast", "public"]
_cache: dict[tuple[str, str], dict[str, Any]] = {}


def probe(mode: str, shape: str) -> dict[str, Any]:
    key = (mode, shape)
    if key not in _cache:
        env = clean_env({"SIZEWISE_FASTPATH": "1" if mode == "fast" else "0"})
        out = subprocess.run([sys.executable, "-m", "tests.unit.service_shapes_probe", shape], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-4000:]
        _cache[key] = json.loads(out.stdout.strip().splitlines()[-1])
    return _cache[key]


@pytest.fixture(params=MODES)
def routes(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, probe(request.param, "routes")


def test_sync_and_async_routes(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    assert seen["statuses"][:2] == [200, 200]
    for route in ("/sync/{n}", "/async/{n}"):
        assert seen["http"][route]["count"] == 1.0 and seen["http"][route]["status"] == 200.0, route


def test_apirouter_prefix_is_part_of_the_route(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    assert seen["http"]["/v1/items/{item_id}"]["count"] == 1.0
    assert not any(r.startswith("/{item_id}") for r in seen["http"])


def test_mounted_sub_apps(routes: tuple[str, dict[str, Any]]) -> None:
    mode, seen = routes
    assert seen["statuses"][3:7] == [200, 500, 500, "y"]
    if mode == "public":
        assert seen["fastpath"] is False  # while "fast" is the default, which older SDKs serve on the public path
    if seen["fastpath"]:  # the matched template, the mount's prefix in front
        assert seen["http"]["/sub/hello/{name}"]["count"] == 1.0
        failed = seen["http"]["/sub/fail/{n}"]
        assert (failed["count"], failed["status"], failed["error"]) == (2.0, 500.0, "SubAppError")  # __main__
        assert seen["http"]["/plain/echo/{word}"]["count"] == 1.0
        assert "/sub" not in seen["http"] and "/plain" not in seen["http"]
    else:  # the contrib FastAPI instrumentor matches before routing: only the mount's own path (README)
        assert seen["http"]["/sub"]["count"] == 3.0
        assert seen["http"]["/plain"]["count"] == 1.0


def test_sub_app_errors_are_grouped_once_under_the_full_route(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    sub = [g for g in seen["groups"] if g["type"].endswith("SubAppError")]
    assert [(g["route"], g["count"]) for g in sub] == [("/sub/fail/{n}", 2)], seen["groups"]  # the mount's prefix


def test_websocket_works_and_is_not_an_http_request(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    assert seen["ws_reply"] == "echo:ping"
    assert seen["ws_counted"] == 0
    assert "/ws" not in seen["http"]


def test_streaming_duration_ends_at_the_last_chunk(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    assert seen["stream_body"] == "".join(f"chunk{i}\n" for i in range(CHUNKS))
    stream = seen["http"]["/stream"]
    assert stream["count"] == 1.0 and stream["status"] == 200.0
    assert stream["sum"] >= CHUNKS * CHUNK_PAUSE  # the generator slept this long between chunks


def test_background_tasks(routes: tuple[str, dict[str, Any]]) -> None:
    _, seen = routes
    assert seen["ran"] == ["bg", "bg-fail"]
    assert seen["statuses"][7:] == [200, 200]
    for route in ("/bg", "/bg-fail"):  # once each; the client got its 200, so no error.type
        assert seen["http"][route] == {"count": 1.0, "sum": pytest.approx(seen["http"][route]["sum"]),
                                       "status": 200.0, "error": ""}, route
    failed = [g for g in seen["groups"] if g["type"].endswith("BackgroundError")]
    assert failed == [{"type": failed[0]["type"], "route": "/bg-fail", "count": 1}], seen["groups"]
    # 10 HTTP requests (the websocket is not one); errors: the two sub-app failures and the background one
    assert seen["stats"] == {"total": 10, "errors": 3}


@pytest.mark.parametrize("mode", MODES)
def test_app_without_lifespan(mode: str) -> None:
    seen = probe(mode, "nolifespan")
    assert seen["started"] is False  # the server never ran the lifespan
    assert seen["statuses"] == [200, 500]
    assert seen["http"]["/sync/{n}"]["count"] == 1.0
    assert [(g["route"], g["count"]) for g in seen["groups"] if g["type"].endswith("SubAppError")] == \
        [("/sub/fail/{n}", 1)]
    assert seen["health"] == 200  # served (a saturated CPU warns, it does not fail)
