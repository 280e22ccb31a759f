"""Fingerprints: which occurrences are "the same error".

Default, as Sentry does it: the exception type, the in-app frames as ``module.function`` (no line
numbers, so an edit above the raise keeps the group) and the route template. Without in-app frames
the parameterized message stands in for the frames. Messages are parameterized in Sentry's order:
emails, URLs, IPs, UUIDs, hashes, dates, durations, hex, floats, ints.

Custom fingerprints are lists of strings; the element ``{{default}}`` expands to the default one.
"""

from __future__ import annotations

import functools
import hashlib
import linecache
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from sizewise_otel.errors.context import Frame

MAX_FRAMES = 50

_PARAM_SOURCES: tuple[tuple[str, str, int], ...] = (
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "<email>", 0),
    (r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", "<url>", re.I),
    (r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])", "<ip>", 0),
    (r"(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::?[0-9a-f]{1,4})+(?![\w:])", "<ip>", re.I),
    (r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", "<uuid>", re.I),
    (r"\b[0-9a-f]{40}\b", "<sha1>", re.I),
    (r"\b[0-9a-f]{32}\b", "<md5>", re.I),
    (r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b", "<date>", 0),
    (r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b", "<date>", 0),
    (r"\b\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|sec|secs|seconds?|minutes?|mins?|hours?|h|days?)\b", "<duration>",
     re.I),
    (r"\b0x[0-9a-f]+\b", "<hex>", re.I),
    (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", "<hex>", re.I),
    (r"(?<![\w.])-?\d+\.\d+(?![\w.])", "<float>", 0),
    (r"(?<![\w.])-?\d+(?![\w.])", "<int>", 0),
    (r"(?<=\w)\d{4,}\b", "<int>", 0),  # ids glued to a word: order12345 -> order<int>
)
_PARAMS = tuple((re.compile(rx, flags), repl) for rx, repl, flags in _PARAM_SOURCES)


_DIGIT = re.compile(r"\d")


def parameterize(message: str, limit: int = 512) -> str:
    """Replace the variable parts of a message with placeholders."""
    text = message[:limit]
    if not _DIGIT.search(text) and "@" not in text and "://" not in text:
        return text  # every pattern needs a digit, an @ or a URL scheme
    for regex, repl in _PARAMS:
        text = regex.sub(repl, text)
    return text


@functools.lru_cache(maxsize=1024)
def parameterize_route(route: str) -> str:
    """Route templates are already parameterized; a raw path handed in by mistake is made one."""
    return parameterize(route, 300)


def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {os.path.dirname(os.__file__)}
    roots.discard("")
    return tuple(sorted(os.path.normcase(os.path.abspath(r)) + os.sep for r in roots))


_LIB_ROOTS = _library_roots()
_NOT_APP_MODULES = ("starlette.", "fastapi.", "uvicorn.", "anyio.", "asyncio.", "opentelemetry.",
                    "sqlalchemy.", "sizewise_otel.errors.", "concurrent.", "threading", "runpy")
_in_app_cache: dict[str, bool] = {}


def is_in_app(filename: str, module: str) -> bool:
    key = f"{filename}|{module}"
    found = _in_app_cache.get(key)
    if found is None:
        path = os.path.normcase(os.path.abspath(filename)) if filename else ""
        found = not (
            not path or filename.startswith("<") or "site-packages" in path or "dist-packages" in path
            or path.startswith(_LIB_ROOTS) or module.startswith(_NOT_APP_MODULES)
            or (module.startswith("sizewise_otel.") and not module.startswith("sizewise_otel.demo"))
        )
        if len(_in_app_cache) < 10_000:
            _in_app_cache[key] = found
    return found


def extract_frames(tb: TracebackType | None, *, with_locals: bool = False) -> list[Frame]:
    """The traceback's frames, innermost last, capped at MAX_FRAMES (the innermost are kept)."""
    raw = []
    while tb is not None:
        raw.append(tb)
        tb = tb.tb_next
    raw = raw[-MAX_FRAMES:]
    frames = []
    for i, t in enumerate(raw):
        frame = t.tb_frame
        code = frame.f_code
        module = str(frame.f_globals.get("__name__", "?"))
        in_app = is_in_app(code.co_filename, module)
        local_vars = None
        if with_locals and in_app and i >= len(raw) - 5:
            local_vars = {k: _short_repr(v) for k, v in list(frame.f_locals.items())[:30]}
        frames.append(Frame(module, getattr(code, "co_qualname", code.co_name),
                            os.path.basename(code.co_filename), t.tb_lineno, in_app, local_vars))
    return frames


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return "<unrepresentable>"
    return text if len(text) <= 256 else text[:256] + "..."


_body_cache: dict[tuple[Any, ...], str] = {}


class ChainSnapshot:
    """What an exception looked like when it was captured: its traceback head and its chained cause.

    Taken on the request path (attribute reads only). When the exception propagates further after the
    capture, Python prepends new traceback entries to ``__traceback__`` and may set ``__context__``;
    the snapshot keeps the fingerprint and the stack trace those of the capture point.
    """

    __slots__ = ("cause", "explicit", "tb")

    def __init__(self, exc: BaseException) -> None:
        self.tb = exc.__traceback__
        cause = exc.__cause__
        self.explicit = cause is not None
        self.cause = cause if cause is not None else (None if exc.__suppress_context__ else exc.__context__)


def format_stacktrace(exc: BaseException, message: str | None = None,
                      scrub: Callable[[str], str] = str, *, snapshot: ChainSnapshot | None = None,
                      _depth: int = 0) -> str:
    """Python's traceback rendering (as OTel's ``exception.stacktrace`` expects), chained causes
    included (3 deep), without the costly 3.11 caret computation.

    ``scrub`` is applied to every part: the frame lines (cached per code location, so a hot error
    pays for it once) and the messages. ``message`` is the already-scrubbed top-level message.
    ``snapshot`` (see :class:`ChainSnapshot`) stands for the exception's state at capture time.
    """
    parts: list[str] = []
    try:
        snap = snapshot or ChainSnapshot(exc)
        cause = snap.cause
        if cause is not None and _depth < 3:
            parts.append(format_stacktrace(cause, None, scrub, _depth=_depth + 1))
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n"
                         if snap.explicit else
                         "\nDuring handling of the above exception, another exception occurred:\n\n")
        entries = []
        tb = snap.tb
        while tb is not None:
            entries.append(tb)
            tb = tb.tb_next
        if entries:
            # ``scrub`` is usually a bound method (a new object on every attribute access): key on its
            # owner and the owner's rule version, so the cache hits for every capture of a hot error.
            owner = getattr(scrub, "__self__", scrub)
            key = (id(owner), getattr(owner, "version", 0), getattr(scrub, "__name__", ""),
                   *((t.tb_frame.f_code, t.tb_lineno) for t in entries[-MAX_FRAMES:]))
            body = _body_cache.get(key)
            if body is None:
                lines = ["Traceback (most recent call last):\n"]
                if len(entries) > MAX_FRAMES:
                    lines.append(f"  [{len(entries) - MAX_FRAMES} frames omitted]\n")
                for t in entries[-MAX_FRAMES:]:
                    code = t.tb_frame.f_code
                    lines.append(f'  File "{code.co_filename}", line {t.tb_lineno}, in {code.co_name}\n')
                    line = linecache.getline(code.co_filename, t.tb_lineno, t.tb_frame.f_globals).strip()
                    if line:
                        lines.append(f"    {line}\n")
                body = scrub("".join(lines))
                if len(_body_cache) >= 2048:
                    _body_cache.clear()
                _body_cache[key] = body
            parts.append(body)
        if message is None:
            try:
                message = scrub(str(exc))
            except Exception:
                message = "<unprintable>"
        name = error_type_name(exc)
        parts.append(f"{name}: {message}\n" if message else f"{name}\n")
    except Exception:
        return type(exc).__name__
    return "".join(parts)


_type_names: dict[type, str] = {}


def error_type_name(exc: BaseException) -> str:
    cls = type(exc)
    name = _type_names.get(cls)
    if name is None:
        module = cls.__module__
        name = cls.__qualname__ if module in (None, "builtins", "__main__") else f"{module}.{cls.__qualname__}"
        if len(_type_names) < 4096:
            _type_names[cls] = name
    return name


def default_components(error_type: str, frames: Sequence[Frame], route: str | None, title: str) -> list[str]:
    in_app = [f for f in frames if f.in_app] or list(frames)
    parts = [error_type]
    if in_app:
        parts += [f"{f.module}.{f.function}" for f in in_app]
    else:
        parts.append(title)
    parts.append(f"route={route or '-'}")
    return parts


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def fingerprint(error_type: str, frames: Sequence[Frame], route: str | None, title: str,
                custom: Sequence[str] | None = None) -> str:
    """The group id: 32 hex characters."""
    default = default_components(error_type, frames, route, title)
    if not custom:
        return _digest(default)
    parts: list[str] = []
    for element in custom:
        if re.fullmatch(r"\{\{\s*default\s*\}\}", str(element)):
            parts += default
        else:
            parts.append(str(element))
    return _digest(["custom", *parts])


GROUP_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def in_app_frames_of_current_stack(skip: int = 2) -> list[Frame]:
    """For captures without an exception: the caller's in-app frames."""
    return frames_from_stack_snapshot(stack_snapshot(skip + 1))


StackEntry = tuple[Any, int, Any]  # (code object, line number, module name)


def stack_snapshot(skip: int = 2) -> list[StackEntry]:
    """The caller's stack as (code, line, module) references, innermost first: no strings built.

    The cheap half of :func:`in_app_frames_of_current_stack`, for the request path; the writer thread
    turns it into :class:`Frame` objects with :func:`frames_from_stack_snapshot`.
    """
    out: list[StackEntry] = []
    f = sys._getframe(skip)
    while f is not None and len(out) < MAX_FRAMES:
        out.append((f.f_code, f.f_lineno, f.f_globals.get("__name__", "?")))
        f = f.f_back
    return out


def frames_from_stack_snapshot(entries: Sequence[StackEntry]) -> list[Frame]:
    frames = []
    for code, lineno, module_name in reversed(entries):
        module = str(module_name)
        frames.append(Frame(module, getattr(code, "co_qualname", code.co_name),
                            os.path.basename(code.co_filename), lineno or 0,
                            is_in_app(code.co_filename, module)))
    return frames
