"""Alerting: one AlertRule catalog -> Prometheus rules, and an embedded evaluator."""

from sizewise_otel.alerts.rules import AlertRule, AlertSeverity

__all__ = ["AlertRule", "AlertSeverity"]
