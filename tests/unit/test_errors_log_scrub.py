"""The log scrubbing filter on a server's traceback: secrets go, the innermost frames stay."""

from __future__ import annotations

import io
import logging

from sizewise_otel.errors.logging_handler import ScrubbingLogFilter
from sizewise_otel.errors.scrub import Scrubber


def _deep(n: int) -> None:
    if n == 0:
        raise ValueError("innermost failure, token=abc123secret")
    _deep(n - 1)


def _printed(exc: BaseException) -> str:
    logger = logging.getLogger("sizewise.test.logscrub")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubbingLogFilter(Scrubber()))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("Exception in ASGI application", exc_info=(type(exc), exc, exc.__traceback__))
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_long_traceback_keeps_its_innermost_frames_and_loses_its_secrets() -> None:
    try:
        _deep(60)  # well past Scrubber.max_string (4096 characters) once rendered
    except ValueError as exc:
        printed = _printed(exc)
    assert len(printed) > 4096
    assert "[truncated]" not in printed
    assert 'raise ValueError("innermost failure, token=[Filtered]")' in printed
    assert printed.rstrip("\n").endswith("ValueError: innermost failure, token=[Filtered]")
    assert "abc123secret" not in printed
