"""STUB (issue 6 replaces this): alert rules as data."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AlertSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric_name: str
    condition: str
    threshold: float
    duration_seconds: int
    severity: AlertSeverity
    description: str
