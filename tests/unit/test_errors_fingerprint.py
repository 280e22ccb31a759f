"""Fingerprints and message parameterization."""

from __future__ import annotations

from sizewise_otel.errors.context import Frame
from sizewise_otel.errors.fingerprint import (
    error_type_name,
    extract_frames,
    fingerprint,
    format_stacktrace,
    parameterize,
)


def test_parameterize_in_sentry_order() -> None:
    msg = ("user bob@example.com at 10.0.0.7 got 404 from https://api.example.com/v1/items/17 "
           "for 550e8400-e29b-41d4-a716-446655440000 at 2024-05-01T10:22:33Z after 350ms "
           "ptr 0xdeadbeef sha da39a3ee5e6b4b0d3255bfef95601890afd80709 ratio 0.75 id 12345")
    out = parameterize(msg)
    assert out == ("user <email> at <ip> got <int> from <url> for <uuid> at <date> after <duration> "
                   "ptr <hex> sha <sha1> ratio <float> id <int>")


def test_parameterize_keeps_words() -> None:
    assert parameterize("duct sizing failed") == "duct sizing failed"
    assert parameterize("order12345 missing") == "order<int> missing"


def _raise(kind: int, n: int) -> None:
    if kind == 0:
        raise ValueError(f"item {n} not found")
    raise ValueError(f"other site {n}")


def _capture(kind: int, n: int) -> BaseException:
    try:
        _raise(kind, n)
    except ValueError as exc:
        return exc
    raise AssertionError


def _fp(exc: BaseException, route: str | None = "/items/{id}", custom: list[str] | None = None) -> str:
    frames = extract_frames(exc.__traceback__)
    return fingerprint(error_type_name(exc), frames, route, parameterize(str(exc)), custom)


def test_same_site_same_group_different_site_different_group() -> None:
    a1, a2, b = _capture(0, 1), _capture(0, 999), _capture(1, 1)
    assert _fp(a1) == _fp(a2)
    # Same function, different line: frames have no line numbers, so still the same group.
    assert _fp(a1) == _fp(b)
    assert _fp(a1) != _fp(a1, route="/other")


def test_frames_are_in_app_without_line_numbers() -> None:
    exc = _capture(0, 1)
    frames = extract_frames(exc.__traceback__)
    assert [f.function for f in frames if f.in_app][-1] == "_raise"
    assert all(f.module == __name__ for f in frames if f.in_app)


def test_no_frames_uses_message() -> None:
    t = "ValueError"
    assert fingerprint(t, [], None, "a <int>") == fingerprint(t, [], None, "a <int>")
    assert fingerprint(t, [], None, "a <int>") != fingerprint(t, [], None, "b <int>")


def test_custom_fingerprint_and_default_element() -> None:
    exc = _capture(0, 1)
    plain = _fp(exc)
    custom = _fp(exc, custom=["payments"])
    extended = _fp(exc, custom=["{{ default }}", "tenant-a"])
    assert len({plain, custom, extended}) == 3
    assert _fp(_capture(0, 2), custom=["payments"]) == custom
    assert _fp(_capture(0, 2), custom=["{{default}}", "tenant-a"]) == extended


def test_stacktrace_rendering_with_cause() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        text = format_stacktrace(exc)
    assert "KeyError: 'inner'" in text and "RuntimeError: outer" in text
    assert "direct cause" in text and "Traceback (most recent call last)" in text


def test_frame_dict() -> None:
    f = Frame("m", "f", "x.py", 3, True)
    assert f.as_dict()["module"] == "m"
