"""Static lint of the generated dashboards, after grafana/dashboard-linter's rules.

Every panel: title, description, unit, datasource ``${datasource}``; ids and refIds unique; every
expression parses (promql-parser) and every rate/increase uses ``$__rate_interval``; every metric and
label name exists in the signal catalog or the verified instrumentation allow-list; the job/instance
matchers are present; no ``__inputs``/``${DS_...}`` placeholders; the checked-in JSON is current.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest

from sizewise_otel.catalog import SIGNALS, Kind
from sizewise_otel.dashboard import grafana
from sizewise_otel.dashboard.widgets import (
    DASHBOARDS,
    INSTRUMENTATION_METRICS,
    STANDARD_LABELS,
    register_widget,
    unregister_widget,
    widgets,
)

ROOT = Path(__file__).resolve().parents[2]
UIDS = {"sizewise-system-overview", "sizewise-application-performance", "sizewise-hvac-calculations",
        "sizewise-microservices-health", "sizewise-error-tracking"}


def catalog_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for sig in SIGNALS:
        labels = set(sig.prom_labels)
        if sig.kind is Kind.HISTOGRAM:
            for suffix in ("_bucket", "_count", "_sum"):
                names[sig.prom_name + suffix] = labels
        else:
            names[sig.prom_name] = labels
    for name, labels in INSTRUMENTATION_METRICS.items():
        names.setdefault(name, set()).update(labels)
    return names


def substitute(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".+").replace("$job", ".+")


def walk(node, out: dict[str, list]) -> None:
    """Collect vector selectors, aggregation labels and range-function windows from a parse tree."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        out["selectors"].append(node)
    elif kind == "MatrixSelector":
        out["selectors"].append(node.vector_selector)
    elif kind == "AggregateExpr":
        if node.modifier is not None:
            out["grouping"].extend(node.modifier.labels)
        walk(node.expr, out)
        if node.param is not None:
            walk(node.param, out)
    elif kind == "Call":
        for arg in node.args:
            walk(arg, out)
    elif kind == "BinaryExpr":
        walk(node.lhs, out)
        walk(node.rhs, out)
    elif kind in ("ParenExpr", "UnaryExpr"):
        walk(node.expr, out)


def selector_name(sel) -> str:
    """``{__name__=~"x(_ratio)?"}``: the one allowed name regex (unit-"1" gauges via the collector)."""
    (matcher,) = [m for m in sel.matchers.matchers if m.name == "__name__"]
    found = re.fullmatch(r"(\w+)\(_ratio\)\?", matcher.value)
    assert found, f"unexpected metric name regex {matcher.value!r}"
    return found.group(1)


def all_boards() -> dict[str, dict]:
    return {path: json.loads(text) for path, text in grafana.render_files().items()}


def all_panels():
    for path, board in all_boards().items():
        for panel in board["panels"]:
            if panel["type"] != "row":
                yield path, board, panel


def test_five_dashboards_with_stable_uids_and_links() -> None:
    boards = all_boards()
    assert {b["uid"] for b in boards.values()} == UIDS
    assert set(boards) == {f"grafana/dashboards/{k}.json" for k in DASHBOARDS}
    for board in boards.values():
        assert board["title"] and board["description"]
        assert "sizewise" in board["tags"]
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["datasource", "job", "instance"]
        ds = board["templating"]["list"][0]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        assert ds["current"]["value"] == grafana.DATASOURCE_UID
        for var in board["templating"]["list"][1:]:
            assert var["datasource"]["uid"] == "${datasource}"
            promql_parser.parse(re.sub(r"label_values\((.*), \w+\)", r"\1", substitute(var["query"])))
        link = board["links"][0]
        assert link["type"] == "dashboards" and link["tags"] == ["sizewise"]
        assert link["includeVars"] and link["keepTime"]


def test_no_input_placeholders() -> None:
    for path, text in grafana.render_files().items():
        assert "__inputs" not in text, path
        assert "${DS_" not in text, path


def test_every_panel_is_complete() -> None:
    for path, _board, panel in all_panels():
        where = f"{path}: {panel.get('title')!r}"
        assert panel["title"], where
        assert panel.get("description"), where
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            assert target["refId"], where
        assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0, where


def test_ids_titles_and_ref_ids_unique() -> None:
    for path, board in all_boards().items():
        titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
        assert len(titles) == len(set(titles)), path
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        assert all(isinstance(i, int) and i > 0 for i in ids)
        for panel in board["panels"]:
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert len(refs) == len(set(refs)), (path, panel["title"])


def test_panels_do_not_overlap() -> None:
    for path, board in all_boards().items():
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (path, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (path, p["title"])
                    cells.add((x, y))


def test_every_expression_parses_and_uses_rate_interval() -> None:
    count = 0
    for path, _board, panel in all_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            where = f"{path}: {panel['title']} {target['refId']}: {expr}"
            for match in re.finditer(r"\b(rate|increase|irate|delta|deriv)\(", expr):
                window = re.search(r"\[([^\]]+)\]", expr[match.end():])
                assert window and window.group(1) == "$__rate_interval", where
            assert not re.search(r"\[\d+[smhd]\]", expr), where  # no hard-coded windows
            promql_parser.parse(substitute(expr))
            count += 1
    assert count >= 40


def test_every_metric_and_label_exists_in_the_catalog() -> None:
    known = catalog_names()
    for path, _board, panel in all_panels():
        for target in panel["targets"]:
            found: dict[str, list] = {"selectors": [], "grouping": []}
            walk(promql_parser.parse(substitute(target["expr"])), found)
            assert found["selectors"], target["expr"]
            used_labels: set[str] = set(found["grouping"])
            metrics = set()
            for sel in found["selectors"]:
                name = sel.name or selector_name(sel)
                assert name in known, f"{path}: {panel['title']}: unknown metric {name}"
                metrics.add(name)
                matchers = {m.name for m in sel.matchers.matchers} - {"__name__"}
                assert {"job", "instance"} <= matchers, f"{panel['title']}: no $job/$instance filter"
                used_labels |= matchers
            allowed = set(STANDARD_LABELS).union(*(known[n] for n in metrics))
            assert used_labels <= allowed, f"{path}: {panel['title']}: {used_labels - allowed}"


def test_checked_in_json_is_current() -> None:
    for rel, text in grafana.render_files().items():
        path = ROOT / rel
        assert path.exists(), f"{rel} missing: run `sizewise-otel render`"
        assert path.read_text() == text, f"{rel} is out of date: run `sizewise-otel render`"


def checked_in_boards() -> dict[str, str]:
    folder = ROOT / "grafana" / "dashboards"
    return {f"grafana/dashboards/{p.name}": p.read_text() for p in sorted(folder.glob("*.json"))}


def test_render_matches_the_checked_in_boards_and_follows_the_catalog() -> None:
    from sizewise_otel.dashboard.expr import m, rate, sum_
    from sizewise_otel.render.artifacts import render

    disk = checked_in_boards()
    assert grafana.render_files() == disk  # same bytes, and no stale board left on disk
    register_widget("test_render_probe", "Render probe", "A catalog change the render must show.",
                    unit="ops", dashboard="hvac-calculations", row="Custom",
                    expr=sum_(rate(m("sizewise_hvac_calculations_total"))))
    try:
        rendered = grafana.render_files()
        changed = {path for path in rendered if rendered[path] != disk.get(path)}
        assert changed == {"grafana/dashboards/hvac-calculations.json"}
        assert "Render probe" in rendered["grafana/dashboards/hvac-calculations.json"]
        # and `sizewise-otel render --check` would fail on it
        assert "grafana/dashboards/hvac-calculations.json" in render(ROOT, check=True)
    finally:
        unregister_widget("test_render_probe")
    assert grafana.render_files() == disk


def test_registered_widget_appears_in_its_dashboard() -> None:
    from sizewise_otel.dashboard.expr import m, rate, sum_

    w = register_widget("test_duct_rate", "Duct sizing rate", "Round-duct calculations per second.",
                        unit="ops", dashboard="hvac-calculations", row="Custom",
                        expr=sum_(rate(m("sizewise_hvac_calculations_total",
                                         sizewise_hvac_calculation_type="round_duct"))))
    try:
        assert w in widgets()
        board = json.loads(grafana.render_files()["grafana/dashboards/hvac-calculations.json"])
        titles = [p["title"] for p in board["panels"]]
        assert "Custom" in titles and "Duct sizing rate" in titles
        with pytest.raises(ValueError):
            register_widget("test_duct_rate", "again", "dup", unit="ops", dashboard="hvac-calculations",
                            row="Custom", expr="up")
        with pytest.raises(ValueError):
            register_widget("x_bad", "x", "x", unit="ops", dashboard="nope", row="r", expr="up")
    finally:
        unregister_widget("test_duct_rate")
    assert "Duct sizing rate" not in grafana.render_files()["grafana/dashboards/hvac-calculations.json"]


def test_provisioning_files() -> None:
    import yaml

    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    prom = by_uid[grafana.DATASOURCE_UID]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    dest = prom["jsonData"]["exemplarTraceIdDestinations"][0]
    assert dest == {"name": "trace_id", "datasourceUid": "sizewise-jaeger"}
    assert by_uid["sizewise-jaeger"]["type"] == "jaeger"
    assert by_uid["sizewise-jaeger"]["url"] == "http://jaeger:16686"
    dash = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/sizewise.yaml").read_text())
    provider = dash["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
