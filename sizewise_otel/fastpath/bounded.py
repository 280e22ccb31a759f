"""One bounded cache type for every memo keyed by something traffic chooses.

Attribute sets, statements, commands, label strings: each is cached because it repeats, and each
key space is in principle open (a new route, a new statement). :class:`BoundedCache` is a plain
``dict`` (``get`` and ``in`` stay C-speed on the hot path) whose only writer, :meth:`put`, keeps it
at ``max_entries``: past that it either stops storing (``on_full="keep"``: the first entries are the
common ones, later ones are computed per call) or starts over (``on_full="clear"``: for caches whose
working set drifts, such as one scrape's label strings).
"""

from __future__ import annotations

from typing import Literal, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """A ``dict`` that never holds more than ``max_entries``; write through :meth:`put` only."""

    __slots__ = ("clear_when_full", "max_entries")

    def __init__(self, max_entries: int, on_full: Literal["keep", "clear"] = "keep") -> None:
        super().__init__()
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.clear_when_full = on_full == "clear"

    def put(self, key: K, value: V) -> V:
        """Store ``value`` unless full (or clear first, per ``on_full``); return ``value`` either way."""
        if len(self) >= self.max_entries and key not in self:
            if not self.clear_when_full:
                return value
            self.clear()
        self[key] = value
        return value
