"""Spec -> Grafana dashboard JSON, through grafana-foundation-sdk (the only importer of it).

The output is deterministic (no timestamps, ids assigned in order) so the committed JSON can be
compared byte for byte with a fresh generation.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

from dashboards import spec

DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every panel and variable reads the Prometheus chosen in the ``datasource`` variable."""
REF_IDS = "ABCDEFGHIJ"


def _targets(panel: spec.Panel) -> list[prom_b.Dataquery]:
    out = []
    for ref, q in zip(REF_IDS, panel.queries, strict=False):
        t = prom_b.Dataquery().expr(q.expr).ref_id(ref).datasource(DATASOURCE)
        t = t.legend_format(q.legend) if q.legend else t
        out.append(t.instant() if panel.kind == "stat" else t.range())
    return out


def _band_overrides(panel: ts_b.Panel, band: tuple[str, str]) -> ts_b.Panel:
    """Shade between the band's series: the lower fills up to the upper, both drawn thin."""
    lower, upper = band
    thin = [dashboard.DynamicConfigValue("custom.lineWidth", 0)]
    return (panel
            .override_by_name(lower, [*thin, dashboard.DynamicConfigValue("custom.fillBelowTo", upper),
                                      dashboard.DynamicConfigValue("custom.fillOpacity", 20)])
            .override_by_name(upper, thin))


def _timeseries(p: spec.Panel) -> ts_b.Panel:
    b = (ts_b.Panel().title(p.title).description(p.description).unit(p.unit).span(p.width).height(p.height)
         .datasource(DATASOURCE).line_width(1).fill_opacity(10 if p.stacked else 0)
         .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM))
         .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                  .sort(common.SortOrder.DESCENDING)))
    if p.kind == "bars":
        b = b.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if p.stacked:
        b = b.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if p.min_value is not None:
        b = b.min(p.min_value)
    if p.max_value is not None:
        b = b.max(p.max_value)
    if p.band is not None:
        b = _band_overrides(b, p.band)
    for t in _targets(p):
        b = b.with_target(t)
    return b


def _stat(p: spec.Panel) -> stat_b.Panel:
    b = (stat_b.Panel().title(p.title).description(p.description).unit(p.unit).span(p.width).height(p.height)
         .datasource(DATASOURCE).graph_mode(common.BigValueGraphMode.NONE)
         .color_mode(common.BigValueColorMode.VALUE)
         .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    for t in _targets(p):
        b = b.with_target(t)
    return b


def _variables(d: spec.Dashboard) -> list[Any]:
    out: list[Any] = [dash_b.DatasourceVariable("datasource").label("Prometheus").type("prometheus")]
    for v in d.variables:
        out.append(dash_b.QueryVariable(v.name).label(v.label).query(v.query).datasource(DATASOURCE)
                   .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dashboard.VariableSort.ALPHABETICAL_ASC)
                   .include_all(v.include_all).multi(v.multi))
    return out


def build(d: spec.Dashboard) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict, panel ids numbered in layout order."""
    b = (dash_b.Dashboard(d.title).uid(d.uid).description(d.description).tags(list(d.tags))
         .editable().time("now-6h", "now").refresh("30s").timezone("browser")
         .tooltip(dashboard.DashboardCursorSync.CROSSHAIR))
    for var in _variables(d):
        b = b.with_variable(var)
    for row in d.rows:
        b = b.with_row(dash_b.Row(row.title))
        for p in row.panels:
            b = b.with_panel(_stat(p) if p.kind == "stat" else _timeseries(p))
    doc: dict[str, Any] = json.loads(json.dumps(b.build(), cls=JSONEncoder))
    for i, panel in enumerate(doc.get("panels", []), start=1):
        panel["id"] = i
    return doc


def render(d: spec.Dashboard) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build(d), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
