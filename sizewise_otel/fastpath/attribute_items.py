"""A span's attributes as (key, value) pairs, at dict speed: the span scrubber's read.

``BoundedAttributes`` is a ``MutableMapping``: ``items()`` calls its ``__getitem__`` once per key, about
ten times the cost of the dict underneath (4 us against 0.4 us for a server span's eleven
attributes, on every sampled span). This reads the dict itself, as a snapshot (``list`` of a dict's
items runs in C, under the GIL, so a concurrent ``set_attribute`` cannot break the iteration), and
falls back to ``items()`` for any other mapping or an SDK without the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes


def attribute_items(attrs: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    if attrs.__class__ is BoundedAttributes:
        store = getattr(attrs, "_dict", None)
        if store.__class__ is dict:
            return list(store.items())  # type: ignore[union-attr]
    return attrs.items()
