"""The five Grafana dashboards, built from the widget catalog with grafana-foundation-sdk.

Output is deterministic (sorted keys, fixed ids), so ``render_files()`` can be compared with the
checked-in ``grafana/dashboards/*.json``. No ``__inputs``/``${DS_...}`` placeholders: every panel
uses the ``datasource`` variable, whose default is the provisioned uid ``sizewise-prometheus``.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from sizewise_otel.dashboard.widgets import DASHBOARDS, Widget, widgets

DATASOURCE_UID = "sizewise-prometheus"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "sizewise"
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
OUTPUT_DIR = "grafana/dashboards"

_PANELS = {"timeseries": timeseries.Panel, "stat": stat.Panel, "gauge": gauge.Panel,
           "bargauge": bargauge.Panel}


def _thresholds(w: Widget) -> dash.ThresholdsConfig:
    if not w.thresholds:
        steps = [model.Threshold(None, "green")]
    elif w.invert:  # low is bad: red below the critical value, yellow below the warning value
        warn, crit = (*w.thresholds, w.thresholds[0])[:2]
        steps = [model.Threshold(None, "red"), model.Threshold(float(crit), "yellow"),
                 model.Threshold(float(warn), "green")]
        if warn == crit:
            steps = [model.Threshold(None, "red"), model.Threshold(float(warn), "green")]
    else:
        colours = ["yellow", "red"]
        steps = [model.Threshold(None, "green")] + [
            model.Threshold(float(v), colours[min(i, 1)]) for i, v in enumerate(w.thresholds)]
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def _panel(w: Widget, panel_id: int, x: int, y: int) -> Any:
    p = (_PANELS[w.panel]()
         .id(panel_id)
         .title(w.title)
         .description(w.description)
         .unit(w.unit)
         .datasource(DS)
         .grid_pos(model.GridPos(h=w.height, w=w.width, x=x, y=y))
         .thresholds(_thresholds(w)))
    if w.decimals is not None:
        p = p.decimals(w.decimals)
    if w.panel == "timeseries":
        p = p.fill_opacity(10).line_width(1)
        if w.thresholds:
            from grafana_foundation_sdk.builders import common as cb
            from grafana_foundation_sdk.models import common as cm

            p = p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    for i, q in enumerate(w.queries):
        target = (prometheus.Dataquery().expr(q.expr.promql()).legend_format(q.legend)
                  .ref_id(REF_IDS[i]).datasource(DS))
        target = target.instant() if w.panel in ("stat", "gauge", "bargauge") else target.range()
        p = p.with_target(target)
    return p


def build_dashboard(key: str, items: list[Widget]) -> dict[str, Any]:
    uid, title, description = DASHBOARDS[key]
    b = (dash.Dashboard(title)
         .uid(uid)
         .description(description)
         .tags([TAG, key])
         .editable()
         .time("now-1h", "now")
         .refresh("30s")
         .timezone("browser")
         .tooltip(model.DashboardCursorSync.CROSSHAIR)
         .link(dash.DashboardLink("SizeWise dashboards").type(model.DashboardLinkType.DASHBOARDS)
               .tags([TAG]).as_dropdown(True).include_vars(True).keep_time(True))
         .with_variable(dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
                        .current(model.VariableOption(selected=True, text="Prometheus",
                                                      value=DATASOURCE_UID)))
         .with_variable(dash.QueryVariable("job").label("Job").datasource(DS)
                        .query("label_values(target_info, job)")
                        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                        .multi(True).include_all(True).all_value(".+")
                        .current(model.VariableOption(selected=True, text="All", value="$__all"))
                        .sort(model.VariableSort.ALPHABETICAL_ASC))
         .with_variable(dash.QueryVariable("instance").label("Instance").datasource(DS)
                        .query('label_values(target_info{job=~"$job"}, instance)')
                        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                        .multi(True).include_all(True).all_value(".+")
                        .current(model.VariableOption(selected=True, text="All", value="$__all"))
                        .sort(model.VariableSort.ALPHABETICAL_ASC)))
    rows: dict[str, list[Widget]] = {}
    for w in items:
        rows.setdefault(w.row, []).append(w)
    panel_id, y = 1, 0
    for row_title, members in rows.items():
        b = b.with_row(dash.Row(row_title).id(panel_id).grid_pos(model.GridPos(h=1, w=24, x=0, y=y)))
        panel_id += 1
        y += 1
        x, line_h = 0, 0
        for w in members:
            if x + w.width > 24:
                x, y, line_h = 0, y + line_h, 0
            b = b.with_panel(_panel(w, panel_id, x, y))
            panel_id += 1
            x += w.width
            line_h = max(line_h, w.height)
        y += line_h
    board = json.loads(JSONEncoder(sort_keys=True).encode(b.build()))
    board.pop("id", None)  # let Grafana assign the database id
    board["schemaVersion"] = board.get("schemaVersion", 39)
    return board


def build_all() -> dict[str, dict[str, Any]]:
    by_board: dict[str, list[Widget]] = {k: [] for k in DASHBOARDS}
    for w in widgets():
        by_board[w.dashboard].append(w)
    return {key: build_dashboard(key, items) for key, items in by_board.items()}


def render_files() -> dict[str, str]:
    """Repo-relative path -> JSON text of each dashboard (deterministic)."""
    return {f"{OUTPUT_DIR}/{key}.json": json.dumps(board, indent=2, sort_keys=True) + "\n"
            for key, board in build_all().items()}


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every query of a dashboard JSON."""
    out = []
    for panel in board.get("panels", []):
        for target in panel.get("targets", []) or []:
            out.append((panel.get("title", ""), target.get("refId", ""), target.get("expr", "")))
    return out
