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


def test_sdk_disabled_is_its_own_reason_without_a_second_warning(fresh: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_SDK_DISABLED: no probe runs (the SDK's no-op tracer would fail one for the wrong reason);
    the telemetry module warns about it, this module does not add a second warning."""
    fresh.delenv(detect.ENV, raising=False)
    fresh.setenv("OTEL_SDK_DISABLED", " TRUE ")
    with caplog.at_level(logging.DEBUG):
        found = detect.warn_if_disabled()
    assert found == detect.FastpathStatus(False, detect.SDK_DISABLED_REASON)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(("name", "value"), [
    ("OTEL_TRACES_SAMPLER", "no_such_sampler"),
    ("OTEL_TRACES_SAMPLER", "traceidratio"),  # with a non-numeric argument below
    ("OTEL_METRICS_EXEMPLAR_FILTER", "no_such_filter"),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "lots"),
    ("OTEL_RESOURCE_ATTRIBUTES", "not a pair"),
])
def test_probes_do_not_read_the_otel_environment(fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                 name: str, value: str) -> None:
    """The probes build their providers from arguments only: a bad OTEL_ variable is the SDK's business
    where the service's providers are built, never a reason to report the fast path off, and the
    probes log nothing about it."""
    fresh.delenv(detect.ENV, raising=False)
    fresh.delenv("OTEL_SDK_DISABLED", raising=False)
    fresh.setenv(name, value)
    fresh.setenv("OTEL_TRACES_SAMPLER_ARG", "not-a-number")
    missing = _first_missing()
    with caplog.at_level(logging.DEBUG):
        found = detect.status()
    assert found == (detect.FastpathStatus(True, "") if missing is None else found)
    if missing is not None:  # an older SDK: off for the internal it lacks, not for the variable
        assert found.reason.startswith(f"the installed SDK lacks {missing}"), found.reason
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_probed_once_asks_once_and_takes_a_failing_probe_as_no() -> None:
    from sizewise_otel.fastpath.detect import probed_once

    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    answer = probed_once(probe)
    assert (answer(), answer(), calls) == (True, True, [1])

    def broken() -> bool:
        calls.append(2)
        raise AttributeError("a moved internal")

    failing = probed_once(broken)
    assert (failing(), failing(), calls) == (False, False, [1, 2])
