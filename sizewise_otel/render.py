"""``sizewise-otel render [--check]``: regenerate every artifact derived from the catalogs.

Dashboards (grafana/dashboards/*.json), Prometheus rules and their unit tests, and the README's
metrics reference. ``--check`` writes nothing and fails when a checked-in file differs.
"""

from __future__ import annotations

from pathlib import Path

from sizewise_otel import reference


def generated_files(root: Path) -> dict[str, str]:
    from sizewise_otel.alerts.render import render_files as alert_files
    from sizewise_otel.dashboard.grafana import render_files as dashboard_files

    files: dict[str, str] = {}
    files.update(dashboard_files())
    files.update(alert_files())
    readme = root / "README.md"
    if readme.exists():
        files["README.md"] = reference.splice(readme.read_text())
    return files


def render(root: Path, check: bool = False) -> list[str]:
    """Write (or, with check, compare) every generated file; return the paths that differ."""
    differing = []
    for rel, content in sorted(generated_files(root).items()):
        path = root / rel
        current = path.read_text() if path.exists() else None
        if current != content:
            differing.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
    return differing
