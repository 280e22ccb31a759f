"""Alerting: one ``AlertRule`` catalog, two ways to evaluate it.

``rules`` is the catalog (the spec's ``AlertRule``/``AlertSeverity``, SizeWise's alerting and
recording rules) and ``promtests`` the promtool cases for it. ``prometheus_files`` renders both
into the Prometheus rule files, promtool test files and docs/alerting.md's table. When no
Prometheus runs, ``evaluator`` evaluates the threshold rules in-process and ``notify`` delivers
(log, Slack, signed webhook) through bounded per-channel queues.
"""

from sizewise_otel.alerts.rules import AlertRule, AlertSeverity

__all__ = ["AlertRule", "AlertSeverity"]
