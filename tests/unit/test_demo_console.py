"""The demo's console with a real tracker and real logging: a captured error is one line, an
uncaptured one keeps its traceback, and the banner says where to look with which key."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from sizewise_otel.demo.console import ErrorConsole, banner
from sizewise_otel.demo.load import MIX, describe
from sizewise_otel.errors import ErrorTracker
from sizewise_otel.settings import load_settings
from sizewise_otel.telemetry import get_telemetry
from sizewise_otel.web.auth import key_id
from tests.unit.test_errors_helpers import test_settings

Line = tuple[str, dict[str, Any]]


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[ErrorTracker]:
    settings = test_settings(f"sqlite:///{tmp_path / 'errors.db'}")
    t = ErrorTracker(settings, get_telemetry(settings))
    asyncio.run(t.initialize())
    yield t
    asyncio.run(t.shutdown())


@pytest.fixture
def console(tracker: ErrorTracker) -> Iterator[tuple[ErrorConsole, list[Line]]]:
    lines: list[Line] = []
    c = ErrorConsole(tracker, emit=lambda message, fields: lines.append((message, fields))).install()
    yield c, lines
    c.close()


def _import_bug(row: str) -> BaseException:
    try:
        float(row)
    except ValueError as exc:
        return exc
    raise AssertionError("expected the import bug")


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/api/hvac/import", "headers": [],
            "route": Route("/api/hvac/import", endpoint=lambda request: None, methods=["POST"])}


def _server_logs(exc: BaseException) -> str:
    """What uvicorn's error logger prints for an exception that reached the server."""
    logger = logging.getLogger("uvicorn.error")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    try:
        logger.error("Exception in ASGI application", exc_info=(type(exc), exc, exc.__traceback__))
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def _wait_lines(lines: list[Line], n: int) -> list[Line]:
    deadline = time.monotonic() + 30
    while len(lines) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return lines


def test_a_captured_error_prints_one_line_with_its_id_group_and_route(
        tracker: ErrorTracker, console: tuple[ErrorConsole, list[Line]]) -> None:
    _, lines = console
    exc = _import_bug("12OO")
    error_id = tracker.capture_request_exception(exc, _scope())
    assert _server_logs(exc) == ""  # no "Exception in ASGI application", no traceback
    assert tracker.flush(30)
    stored = tracker.store.get_event(error_id)
    assert stored is not None
    assert _wait_lines(lines, 1) == [("error captured", {
        "error_id": error_id, "group_id": stored["group_id"], "route": "/api/hvac/import", "method": "POST",
        "error_type": "ValueError", "title": stored["title"], "details": f"/errors/{error_id}"})]


def test_an_uncaptured_error_keeps_its_traceback(tracker: ErrorTracker,
                                                 console: tuple[ErrorConsole, list[Line]]) -> None:
    _, lines = console
    printed = _server_logs(_import_bug("n/a"))
    assert printed.startswith("ERROR: Exception in ASGI application\nTraceback (most recent call last):")
    assert "ValueError: could not convert string to float: 'n/a'" in printed
    assert tracker.flush(30)
    time.sleep(0.2)
    assert lines == []


def test_every_accepted_capture_is_reported_once(tracker: ErrorTracker,
                                                 console: tuple[ErrorConsole, list[Line]]) -> None:
    _, lines = console
    ids = [tracker.capture_request_exception(_import_bug(str(i) + "x"), _scope()) for i in range(5)]
    ids.append(tracker.capture_error(_import_bug("manual")))  # not only request errors
    assert tracker.flush(30)
    _wait_lines(lines, len(ids))
    time.sleep(0.2)
    assert sorted(f["error_id"] for _, f in lines) == sorted(ids)


def test_close_restores_the_server_log(tracker: ErrorTracker) -> None:
    c = ErrorConsole(tracker, emit=lambda message, fields: None).install()
    c.close()
    exc = _import_bug("12OO")
    tracker.capture_request_exception(exc, _scope())
    assert "Traceback (most recent call last)" in _server_logs(exc)


def test_banner_without_keys_says_the_endpoints_are_open() -> None:
    text = banner("http://127.0.0.1:8000", load_settings(sizewise_api_keys="", sizewise_api_keys_file=""),
                  describe(20, None))
    assert text.startswith("SizeWise HVAC demo on http://127.0.0.1:8000\n")
    for expected in ("http://127.0.0.1:8000/dashboard", "http://127.0.0.1:8000/errors/groups",
                     "none: the monitoring endpoints are open", "about 20 requests/s until Ctrl-C",
                     "so about 36 deliberate server errors a minute", 'one "error captured" line'):
        assert expected in text, expected


def test_banner_with_keys_names_them_by_id_never_by_value() -> None:
    settings = load_settings(sizewise_api_keys="viewer:v-secret-123456,admin:a-secret-654321",
                             sizewise_api_keys_file="")
    text = banner("http://127.0.0.1:8000", settings, None)
    assert "'Authorization: Bearer <key>'" in text and "SIZEWISE_API_KEYS" in text
    assert f"viewer {key_id('v-secret-123456')}" in text and f"admin {key_id('a-secret-654321')}" in text
    assert "v-secret-123456" not in text and "a-secret-654321" not in text
    assert "none (start with --load" in text


def test_the_load_mix_is_complete() -> None:
    assert abs(sum(share for _, share, _ in MIX) - 1.0) < 1e-9
    assert len(describe(10, 30)) == len(MIX) + 2 and describe(10, 30)[0] == "about 10 requests/s for 30 s:"
