"""The seam's feature check and its switch: never a crash, one warning, a reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from sizewise_otel.fastpath import BoundedCache, detect


def _first_missing() -> str | None:
    """The first internal the installed packages lack (None: the fast path can run here)."""
    for what, check in detect.CHECKS:
        try:
            if not check():
                return what
        except Exception:
            return what
    return None


def _sdk_version() -> tuple[int, ...]:
    return tuple(int(p) for p in version("opentelemetry-sdk").split(".")[:2])


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    detect.reset_for_tests()
    yield monkeypatch
    monkeypatch.undo()
    detect.reset_for_tests()
    assert detect.enabled() == (_first_missing() is None)  # the rest of the session keeps its path


def test_installed_sdk_has_everything_the_fast_path_uses(fresh: pytest.MonkeyPatch) -> None:
    """The newest cell has the fast path; an older SDK reports it off, naming what it lacks."""
    fresh.delenv(detect.ENV, raising=False)
    missing = _first_missing()
    if _sdk_version() >= (1, 45):
        assert missing is None
    found = detect.status()
    if missing is None:
        assert found == detect.FastpathStatus(True, "")
    else:
        assert not found.enabled and found.reason.startswith(f"the installed SDK lacks {missing}")


def test_switched_off_by_environment_with_one_warning(fresh: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    fresh.setenv(detect.ENV, "0")
    with caplog.at_level(logging.WARNING, logger="sizewise.fastpath"):
        first = detect.warn_if_disabled()
        detect.warn_if_disabled()
    assert first == detect.FastpathStatus(False, "SIZEWISE_FASTPATH=0")
    assert [r.getMessage() for r in caplog.records].count(
        "sizewise fast path off: SIZEWISE_FASTPATH=0; using the public OpenTelemetry APIs (same series, slower)") == 1


def test_a_missing_sdk_internal_turns_it_off_with_the_reason(fresh: pytest.MonkeyPatch) -> None:
    fresh.delenv(detect.ENV, raising=False)

    def moved() -> bool:
        from opentelemetry.sdk.metrics import _no_such_internal  # type: ignore[attr-defined]  # noqa: F401
        return True

    fresh.setattr(detect, "CHECKS", (("a moved internal", moved), ("a false one", lambda: False), *detect.CHECKS))
    found = detect.status()
    assert not found.enabled
    assert found.reason.startswith("the installed SDK lacks a moved internal (ImportError")


def test_bounded_cache_keeps_or_clears_at_its_bound() -> None:
    keep: BoundedCache[int, int] = BoundedCache(2)
    assert [keep.put(i, i * 10) for i in range(4)] == [0, 10, 20, 30]  # the value comes back either way
    assert keep == {0: 0, 1: 10}
    keep.put(1, 11)  # an existing key is still updated when full
    assert keep == {0: 0, 1: 11}
    clear: BoundedCache[int, int] = BoundedCache(2, on_full="clear")
    for i in range(3):
        clear.put(i, i)
    assert clear == {2: 2}
    with pytest.raises(ValueError):
        BoundedCache(0)
