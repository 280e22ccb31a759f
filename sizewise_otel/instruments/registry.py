"""Idempotence markers and undo actions: one registry instead of attributes set on foreign objects.

:data:`MARKS` answers "is this app / engine / client / process already instrumented for X?" without
writing anything onto the object (an app, an engine or a Redis client belongs to the host service).
Targets are held weakly where they allow it, so marking never keeps an object alive.
:class:`Undo` collects what ``instrument()`` changed, as callables run in reverse by
``uninstrument()``; one failing step never stops the others.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("sizewise.instrument")
T = TypeVar("T")

PROCESS: Any = object()  # the target for process-wide instrumentation (httpx, system metrics)


class Marks:
    """Which (target, what) pairs are instrumented; identity-keyed, weak where possible."""

    def __init__(self) -> None:
        self._marks: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _forget(self, key: int) -> Callable[[Any], None]:
        def drop(_ref: Any) -> None:
            with self._lock:
                self._marks.pop(key, None)
        return drop

    def claim(self, target: Any, what: str, value: Any = True) -> bool:
        """Mark ``target`` as instrumented for ``what`` (keeping ``value``); ``False`` if it already was."""
        key = id(target)
        with self._lock:
            found = self._marks.get(key)
            if found is None or _deref(found[0]) is not target:
                try:
                    ref: Any = weakref.ref(target, self._forget(key))
                except TypeError:  # not weak-referenceable: held until released
                    ref = target
                found = self._marks[key] = (ref, {})
            if what in found[1]:
                return False
            found[1][what] = value
            return True

    def get(self, target: Any, what: str) -> Any:
        """The value kept with the mark, or ``None`` when ``target`` is not marked for ``what``."""
        with self._lock:
            found = self._marks.get(id(target))
            return found[1].get(what) if found is not None and _deref(found[0]) is target else None

    def marked(self, target: Any, what: str) -> bool:
        with self._lock:
            found = self._marks.get(id(target))
            return found is not None and _deref(found[0]) is target and what in found[1]

    def release(self, target: Any, what: str) -> None:
        with self._lock:
            found = self._marks.get(id(target))
            if found is not None and _deref(found[0]) is target:
                found[1].pop(what, None)
                if not found[1]:
                    del self._marks[id(target)]


def _deref(ref: Any) -> Any:
    return ref() if isinstance(ref, weakref.ref) else ref


MARKS = Marks()


class Undo:
    """Undo actions in the order things were done; :meth:`run` replays them backwards, once."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], Any]]] = []

    def add(self, what: str, step: Callable[[], Any]) -> None:
        self._steps.append((what, step))

    def claim(self, target: Any, what: str) -> bool:
        """:meth:`Marks.claim`, with the release registered as an undo step."""
        if not MARKS.claim(target, what):
            return False
        self.add(f"mark {what}", lambda: MARKS.release(target, what))
        return True

    def run(self) -> list[str]:
        """Run every step (newest first); returns the names of the steps that failed."""
        failed = []
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception:  # keep undoing the rest
                log.warning("uninstrument step failed: %s", what, exc_info=True)
                failed.append(what)
        return failed


class PerProvider(Generic[T]):
    """One object per meter provider (instruments registered once per provider, whatever the number
    of clients or calls): identity-keyed, so a new provider at a reused id gets its own."""

    def __init__(self) -> None:
        self._found: dict[int, tuple[Any, T]] = {}
        self._lock = threading.Lock()

    def get(self, provider: Any, make: Callable[[], T]) -> T:
        with self._lock:
            found = self._found.get(id(provider))
            if found is None or found[0] is not provider:
                found = self._found[id(provider)] = (provider, make())
            return found[1]
