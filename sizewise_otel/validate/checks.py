"""Every check module, imported so that each registers its checks (the registry imports none of them)."""

from sizewise_otel.validate import (  # noqa: F401  (importing registers the checks)
    checks_alerting,
    checks_components,
    checks_dashboards,
    checks_errors,
    checks_health,
    checks_metrics,
    checks_performance,
    checks_readiness,
)
