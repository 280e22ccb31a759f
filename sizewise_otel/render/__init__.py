"""``sizewise-otel render [--check]``: every checked-in file generated from the catalogs.

``artifacts`` gathers them all and writes (or, with ``--check``, compares) them: the Grafana
dashboards (from :mod:`sizewise_otel.dashboard.grafana`), the Prometheus rule and promtool test
files (from :mod:`sizewise_otel.alerts.prometheus_files`), the k8s kustomization listing those rule
files, and the README's metrics table, which ``metrics_reference`` renders from the signal catalog.
"""
