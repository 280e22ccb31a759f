"""The health vocabulary: a status, what a check function returns, and a check's recorded result."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """The spec's three states; ordered healthy < warning < critical."""

    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0, 1, 2: the value of the ``sizewise.health.status`` gauge."""
        return _RANK[self]

    @property
    def ietf(self) -> str:
        """The IETF health-check format's word for this status."""
        return _IETF[self]

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        return max(statuses, key=lambda s: s.rank, default=cls.HEALTHY)

    @classmethod
    def coerce(cls, value: Any) -> Status:
        """Accept a Status, a bool, or a word: healthy/ok/pass, warning/warn/degraded, critical/fail."""
        if isinstance(value, Status):
            return value
        if isinstance(value, bool):
            return cls.HEALTHY if value else cls.CRITICAL
        word = str(value).strip().lower()
        try:
            return _WORDS[word]
        except KeyError:
            raise ValueError(f"not a health status: {value!r}") from None


_RANK = {Status.HEALTHY: 0, Status.WARNING: 1, Status.CRITICAL: 2}
_IETF = {Status.HEALTHY: "pass", Status.WARNING: "warn", Status.CRITICAL: "fail"}
_WORDS = {
    **{w: Status.HEALTHY for w in ("healthy", "ok", "up", "pass", "true")},
    **{w: Status.WARNING for w in ("warning", "warn", "degraded")},
    **{w: Status.CRITICAL for w in ("critical", "fail", "down", "error", "unhealthy", "false")},
}


@dataclass
class Outcome:
    """What a check function returns (it may also return None, a bool, a status word or a dict).

    ``reason`` is a short machine word: ``timeout``, ``error``, ``unreachable``, ``threshold``,
    ``slow``, ``http_status`` ... ``advice`` is the operator's next step when the check is not healthy.
    """

    status: Status = Status.HEALTHY
    observed_value: float | int | str | None = None
    observed_unit: str | None = None
    threshold: dict[str, float] | None = None
    message: str = ""
    reason: str | None = None
    advice: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Any) -> Outcome:
        """Normalise whatever a user check returned."""
        if isinstance(value, Outcome):
            return value
        if value is None:
            return cls()
        if isinstance(value, (bool, Status, str)):
            return cls(status=Status.coerce(value))
        if isinstance(value, dict):
            known = {k: value[k] for k in ("observed_value", "observed_unit", "threshold", "message",
                                           "reason", "advice") if k in value}
            details = {k: v for k, v in value.items() if k not in known and k not in ("status", "details")}
            details.update(value.get("details") or {})
            return cls(status=Status.coerce(value.get("status", Status.HEALTHY)), details=details, **known)
        raise TypeError(f"a health check returned {type(value).__name__}; expected Outcome, dict, "
                        "bool, status word or None")


# An advice is a fixed sentence, or a function of the failure reason ("timeout", "error", ...).
Advice = str | Callable[[str], str] | None


@dataclass
class CheckSpec:
    """A registered check: the function and how the monitor treats its result."""

    name: str
    fn: Callable[[], Any]
    critical: bool = True  # False: a failure degrades the overall status to warning only
    readiness: bool = False  # part of /readyz
    timeout: float | None = None  # None: HEALTH_CHECK_TIMEOUT_SECONDS
    component: str = ""
    measurement: str = "status"
    component_type: str = "component"
    advice: Advice = None
    observed_unit: str | None = None

    def __post_init__(self) -> None:
        self.component = self.component or self.name

    @property
    def key(self) -> str:
        """The IETF ``checks`` key: ``component:measurement``."""
        return f"{self.component}:{self.measurement}"

    def advice_for(self, reason: str) -> str | None:
        if callable(self.advice):
            return self.advice(reason)
        return self.advice


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status  # what the check observed
    critical: bool
    outcome: Outcome
    duration_s: float
    checked_at: float  # wall clock, seconds since the epoch
    checked_mono: float  # monotonic clock, for ages

    @property
    def impact(self) -> Status:
        """What this result contributes to the overall status: a non-critical failure is a warning."""
        if not self.critical and self.status is Status.CRITICAL:
            return Status.WARNING
        return self.status

    def age(self, now_mono: float) -> float:
        return max(0.0, now_mono - self.checked_mono)


_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRETS = re.compile(r"(?i)(password|passwd|pwd|token|secret)=\S+")


def redact(text: str, limit: int = 300) -> str:
    """Strip credentials from URLs and key=value secrets, and bound the length."""
    text = _CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _SECRETS.sub(r"\1=***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
