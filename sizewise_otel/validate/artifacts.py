"""The checked-in artifacts the stack checks compare against: Grafana dashboards and Prometheus
rule files. Read from the current directory (a checkout) when present, else rendered from the
installed package's catalogs (the same content ``sizewise-otel render`` writes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

# Grafana's variables, replaced so a panel query runs as a plain Prometheus query.
RATE_WINDOW = "30s"
RANGE_WINDOW = "5m"


def dashboards(root: Path | None = None) -> tuple[dict[str, dict[str, Any]], str]:
    root = root or Path.cwd()
    found = sorted((root / "grafana" / "dashboards").glob("*.json"))
    if found:
        return {p.name: json.loads(p.read_text()) for p in found}, str(Path("grafana/dashboards"))
    from sizewise_otel.dashboard.grafana import render_files

    return ({Path(k).name: json.loads(v) for k, v in render_files().items() if k.endswith(".json")},
            "rendered from the installed package")


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every Prometheus target, rows' nested panels included."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels") or [])
            for t in p.get("targets") or []:
                if t.get("expr") and not t.get("hide"):
                    out.append((p.get("title", "?"), t["expr"]))

    walk(dashboard.get("panels") or [])
    return out


def substitute(expr: str) -> str:
    """``$__rate_interval`` -> 30s, ``$job``/``$instance`` (any variable) -> regex ``.+``."""
    expr = re.sub(r"\$\{?__(rate_interval|interval)\}?", RATE_WINDOW, expr)
    expr = re.sub(r"\$\{?__range\}?", RANGE_WINDOW, expr)
    # label="$var" -> label=~".+" ; label=~"$var" -> label=~".+"
    expr = re.sub(r'(\w+)\s*=~?\s*"\$\{?\w+(?::\w+)?\}?"', r'\1=~".+"', expr)
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".+", expr)


def rule_files(root: Path | None = None) -> tuple[dict[str, dict[str, Any]], str]:
    root = root or Path.cwd()
    found = sorted((root / "prometheus" / "rules").glob("*.yml"))
    if found:
        return {p.name: yaml.safe_load(p.read_text()) for p in found}, str(Path("prometheus/rules"))
    from sizewise_otel.alerts.prometheus_files import render_files

    return ({Path(k).name: yaml.safe_load(v) for k, v in render_files().items()
             if k.startswith("prometheus/rules/")}, "rendered from the installed package")


def rule_names(files: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(group, alert or record name) of every rule."""
    return [(g["name"], r.get("alert") or r.get("record"))
            for doc in files.values() for g in (doc or {}).get("groups", []) for r in g.get("rules", [])]
