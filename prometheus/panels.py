"""Panel pieces of the baton dashboard, made with Grafana's own builder library
(grafana-foundation-sdk), so the JSON follows the schema Grafana loads; ``dashboards``
lays them out."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus.sdk import (
    BigValueColorMode,
    BigValueGraphMode,
    Dataquery,
    PromQueryFormat,
    QueryVariable,
    ReduceDataOptions,
    ThresholdsConfig,
    dm,
    stat,
    table,
)

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="baton-prometheus")
STAGE = 'stage=~"$stage"'
CAMPAIGN = 'campaign=~"$campaign"'
# each dashboard state of a job (baton.exporter.dashboard.DASHBOARD_STATES) in its color:
# waiting blue, under way yellow, needs a look orange/purple, failed red, finished green
STATE_COLORS = {"submitting": "light-blue", "pending": "blue", "started": "light-yellow",
                "running": "yellow", "held": "orange", "preempted": "purple",
                "failed": "red", "finished": "green"}

P = TypeVar("P")


def target(expr: str, legend: str = "", table_format: bool = False) -> Dataquery:
    """A PromQL query: a range query drawn over time, or an instant query as a table."""
    q = Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend)
    if table_format:
        return q.format(PromQueryFormat.TABLE).instant()
    return q.format(PromQueryFormat.TIME_SERIES).range()


def not_per_campaign(why: str) -> str:
    """The description of a panel ``$campaign`` does not filter, and why."""
    return f"Not per campaign: {why}, so $campaign does not filter this panel."


def panel(builder: P, title: str, targets: list[Dataquery], w: int, h: int,
          unit: str | None = None, description: str = "") -> P:
    """Title, data source, size (the dashboard places it) and queries, A, B, ... in order."""
    b: Any = builder
    b.title(title).datasource(DATASOURCE).span(w).height(h)
    for i, t in enumerate(targets):
        b.with_target(t.ref_id(chr(ord("A") + i)))
    if unit:
        b.unit(unit)
    if description:
        b.description(description)
    return builder


def numbers(title: str, targets: list[Dataquery], w: int, h: int, unit: str | None = None,
            description: str = "") -> stat.Panel:
    """A stat panel: the last value of each series, as a big number."""
    return panel(stat.Panel(), title, targets, w, h, unit, description) \
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))


def tiles(title: str, targets: list[Dataquery], w: int, h: int, unit: str | None = None,
          description: str = "", steps: list[tuple[float | None, str]] | None = None
          ) -> stat.Panel:
    """Stat tiles: one big number per series, on a background of its color; ``steps``
    color it by value: (from, color), the first from None."""
    p = numbers(title, targets, w, h, unit, description) \
        .color_mode(BigValueColorMode.BACKGROUND).graph_mode(BigValueGraphMode.NONE)
    if steps:
        p.thresholds(ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
            [dm.Threshold(value=v, color=c) for v, c in steps]))
    return p


def state_tiles(title: str, expr: str, w: int, h: int, description: str) -> stat.Panel:
    """One tile per job state (the query's ``state`` label), each in its state's color."""
    p = tiles(title, [target(expr, "{{state}}")], w, h, description=description)
    for state, color in STATE_COLORS.items():
        p.override_by_name(state, [dm.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": color})])
    return p


def variable(name: str, query: str) -> QueryVariable:
    return (QueryVariable(name).label(name).datasource(DATASOURCE)
            .query({"query": query, "refId": name}).definition(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).multi(True)
            .current(dm.VariableOption(text="All", value="$__all")))


def scaled(scheme: dm.FieldColorModeId) -> list[dm.DynamicConfigValue]:
    """A percentage cell whose background scales with its value from 0 to 100."""
    return [dm.DynamicConfigValue(id_val="unit", value="percent"),
            dm.DynamicConfigValue(id_val="min", value=0),
            dm.DynamicConfigValue(id_val="max", value=100),
            dm.DynamicConfigValue(id_val="color", value={"mode": scheme.value}),
            dm.DynamicConfigValue(id_val="custom.cellOptions",
                                  value={"type": "color-background", "mode": "gradient"})]


def joined_table(title: str, columns: dict[str, str], keys: list[str], w: int, h: int,
                 sort_by: str | None = None, units: dict[str, str] | None = None,
                 labels_from: list[str] | None = None, description: str = "",
                 colors: dict[str, dm.FieldColorModeId] | None = None,
                 tooltips: list[str] | None = None) -> table.Panel:
    """One table row per ``keys``, one column per instant query: the seed's progress
    table. Grafana merges the queries on their labels and names the values;
    ``labels_from`` are queries that only bring labels (their value columns are hidden,
    their labels come after the values); ``colors`` are percentage columns whose cells
    scale in that color scheme; ``tooltips`` are text columns kept narrow, whose whole
    text shows on hover (Grafana's cell inspect)."""
    extra = labels_from or []
    exprs = [*columns.values(), *extra]
    names = {f"Value #{chr(ord('A') + i)}": name for i, name in enumerate(columns)}
    hidden = {"Time": True}
    for i in range(len(extra)):
        hidden[f"Value #{chr(ord('A') + len(columns) + i)}"] = True
    p = panel(table.Panel(), title, [target(e, table_format=True) for e in exprs], w, h,
              description=description)
    p.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    p.with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": hidden,
        "indexByName": {k: i for i, k in enumerate([*keys, *columns, *(tooltips or [])])},
        "renameByName": names}))
    if sort_by:
        p.with_transformation(dm.DataTransformerConfig(
            id_val="sortBy", options={"sort": [{"field": sort_by}]}))
    for col, unit in (units or {}).items():
        p.override_by_name(col, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    for col, scheme in (colors or {}).items():
        p.override_by_name(col, scaled(scheme))
    for col in tooltips or []:
        p.override_by_name(col, [dm.DynamicConfigValue(id_val="custom.inspect", value=True),
                                 dm.DynamicConfigValue(id_val="custom.width", value=160)])
    return p
