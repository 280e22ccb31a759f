"""What an error is: its severity, the caller's context, and the scrubbed event the pipeline carries."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ErrorSeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, value: Any, default: ErrorSeverity | None = None) -> ErrorSeverity | None:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            return default


_RANK = {ErrorSeverity.LOW: 0, ErrorSeverity.MEDIUM: 1, ErrorSeverity.HIGH: 2, ErrorSeverity.CRITICAL: 3}


def max_severity(a: str, b: str) -> str:
    sa, sb = ErrorSeverity.parse(a, ErrorSeverity.MEDIUM), ErrorSeverity.parse(b, ErrorSeverity.MEDIUM)
    return str(sa if sa.rank >= sb.rank else sb)  # type: ignore[union-attr]


@dataclass
class ErrorContext:
    """Where and for whom an error happened. Everything here is scrubbed before it is kept.

    ``endpoint`` should be a route template (``/api/items/{item_id}``), never a raw path.
    """

    user_id: str | None = None
    endpoint: str | None = None
    method: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    user_agent: str | None = None
    ip_address: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    additional_data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The non-empty fields, as plain data (still unscrubbed)."""
        out: dict[str, Any] = {}
        for name in ("user_id", "endpoint", "method", "request_id", "session_id", "user_agent",
                     "ip_address"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = str(value)
        for name in ("headers", "tags", "extra", "additional_data"):
            value = getattr(self, name)
            if value:
                out[name] = dict(value)
        return out


@dataclass(frozen=True)
class Frame:
    module: str
    function: str
    filename: str
    lineno: int
    in_app: bool
    locals: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "function": self.function,
                               "filename": self.filename, "lineno": self.lineno, "in_app": self.in_app}
        if self.locals:
            out["locals"] = self.locals
        return out


@dataclass
class ErrorEvent:
    """One captured occurrence, already scrubbed and fingerprinted: safe to store, log and serve."""

    id: str
    group_id: str
    timestamp: float
    error_type: str
    message: str  # scrubbed
    title: str  # scrubbed and parameterized: the group's name
    stacktrace: str  # scrubbed
    frames: list[Frame]
    route: str | None
    method: str | None
    severity: str
    context: dict[str, Any]  # scrubbed
    user_hash: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    source: str = "manual"

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id, "group_id": self.group_id, "timestamp": self.timestamp,
            "type": self.error_type, "message": self.message, "title": self.title,
            "stacktrace": self.stacktrace, "frames": [f.as_dict() for f in self.frames],
            "route": self.route, "method": self.method, "severity": self.severity,
            "context": self.context, "user": self.user_hash, "trace_id": self.trace_id,
            "span_id": self.span_id, "source": self.source,
        }
