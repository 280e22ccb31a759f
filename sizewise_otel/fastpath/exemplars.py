"""The exemplar policy, decided once per meter provider for every lean recorder (HTTP, DB, Redis, cache).

The SDK attaches an exemplar to a measurement when the provider's exemplar filter takes it: by
default (``TraceBasedExemplarFilter``) only measurements made under a sampled span. The lean
histogram follows the same filter; :class:`ExemplarPolicy` turns it into the two questions the hot
paths ask, so no caller re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OFF, TRACE_BASED, ALWAYS, CUSTOM = 0, 1, 2, 3


def exemplar_mode(exemplar_filter: Any) -> int:
    """The filter as one of OFF, TRACE_BASED, ALWAYS (the SDK's three) or CUSTOM (anything else)."""
    if exemplar_filter is None:
        return OFF
    try:
        from opentelemetry.sdk.metrics import (
            AlwaysOffExemplarFilter,
            AlwaysOnExemplarFilter,
            TraceBasedExemplarFilter,
        )
    except ImportError:  # pragma: no cover - an SDK without exemplars
        return OFF
    kind = type(exemplar_filter)
    if kind is TraceBasedExemplarFilter:
        return TRACE_BASED
    if kind is AlwaysOffExemplarFilter:
        return OFF
    if kind is AlwaysOnExemplarFilter:
        return ALWAYS
    return CUSTOM


@dataclass(frozen=True)
class ExemplarPolicy:
    """Which measurements may carry an exemplar under one exemplar filter."""

    mode: int

    @classmethod
    def of(cls, exemplar_filter: Any) -> ExemplarPolicy:
        return cls(exemplar_mode(exemplar_filter))

    @property
    def sampled_only(self) -> bool:
        """Only a measurement under a sampled (recording) span can carry one (or none can)."""
        return self.mode in (OFF, TRACE_BASED)

    def offers(self, recording: bool) -> bool:
        """Whether a measurement made under a span with ``recording`` goes through the exemplar path."""
        return (recording and self.mode == TRACE_BASED) or self.mode in (ALWAYS, CUSTOM)


NO_EXEMPLARS = ExemplarPolicy(OFF)
