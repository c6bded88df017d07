"""What every dashboard shares: its variables, the datasource reference, panel helpers.

Each helper records what its queries must return (the columns the panel reads), so that
the tests can run every query against a real InfluxDB and hold it to that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import (
    common as cb,
)
from grafana_foundation_sdk.builders import (
    dashboard as db,
)
from grafana_foundation_sdk.builders import (
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .fluxquery import DATASOURCE_TYPE, Flux

# The datasource the grafana role provisions; an imported dashboard asks for one.
DATASOURCE_UID = "wattkeeper-influxdb"
DATASOURCE_NAME = "wattkeeper InfluxDB"
DS = dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid="${datasource}")

# Defaults of the variables; the grafana role sets them from the inventory.
DEFAULT_TIMEZONE = "Europe/London"
DEFAULT_RAW_RETENTION = "30d"
TAGS = ["wattkeeper"]
LINK_TAG = "wattkeeper"


def datasource_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("datasource")
        .label("InfluxDB")
        .type(DATASOURCE_TYPE)
        .current(dm.VariableOption(text=DATASOURCE_NAME, value=DATASOURCE_UID))
        .description("The InfluxDB 2 datasource (Flux) that reads the wattkeeper buckets")
    )


def timezone_variable() -> db.TextBoxVariable:
    return (
        db.TextBoxVariable("timezone")
        .label("Time zone")
        .default_value(DEFAULT_TIMEZONE)
        .current(dm.VariableOption(text=DEFAULT_TIMEZONE, value=DEFAULT_TIMEZONE))
        .description(
            "IANA time zone (Europe/Helsinki, Europe/London...): days, weeks and months "
            "start at its midnight"
        )
    )


def raw_retention_variable() -> db.ConstantVariable:
    return (
        db.ConstantVariable("raw_retention")
        .value(DEFAULT_RAW_RETENTION)
        .description("How long the SOURCE_raw buckets keep data; older ranges read the 1h tier")
    )


def heatpump_meter_variable() -> db.TextBoxVariable:
    return (
        db.TextBoxVariable("heatpump_meter")
        .label("Heat pump meter (pulse channel)")
        .default_value("")
        .current(dm.VariableOption(text="", value=""))
        .description(
            "The pulse channel that meters the heat pump's electricity; empty: the "
            "controller's own energy counters (where its firmware has them)"
        )
    )


PanelBuilder = timeseries.Panel | stat.Panel | statetimeline.Panel | table.Panel


@dataclass(frozen=True)
class Expect:
    """What one query of a panel must return: these columns, on at least one row."""

    panel: str
    ref_id: str
    columns: tuple[str, ...]


@dataclass
class Board:
    """One dashboard being built, and what its queries must return."""

    uid: str
    title: str
    description: str
    heatpump: bool = False
    expects: list[Expect] = field(default_factory=list)
    builder: db.Dashboard = field(init=False)
    next_id: int = 1

    def __post_init__(self) -> None:
        variables: list[cogbuilder.Builder[dm.VariableModel]] = [
            datasource_variable(),
            timezone_variable(),
            raw_retention_variable(),
        ]
        if self.heatpump:
            variables.append(heatpump_meter_variable())
        self.builder = (
            db.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(TAGS)
            .editable()
            .timezone("browser")
            .refresh("1m")
            .time("now-7d", "now")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .variables(variables)
            .link(
                db.DashboardLink("wattkeeper")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags([LINK_TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )

    def _id(self) -> int:
        """Panel ids, unique in the dashboard (Grafana links and repeats rely on them)."""
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self._id()))

    def add(
        self,
        panel: PanelBuilder,
        title: str,
        queries: dict[str, str],
        columns: tuple[str, ...],
    ) -> None:
        """Add a panel with its queries (refId -> Flux), each expected to give ``columns``."""
        for ref, flux in queries.items():
            panel.with_target(Flux(flux).ref_id(ref).datasource(DS))
            self.expects.append(Expect(title, ref, columns))
        self.builder.with_panel(panel.id(self._id()))


SERIES = ("_time", "_value")
VALUE = ("_value",)


def graph(
    title: str,
    unit: str,
    *,
    bars: bool = False,
    description: str = "",
    width: int = 12,
    height: int = 8,
    stack: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``bars`` for per-day or per-hour amounts."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(width)
        .height(height)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI))
    )
    if bars:
        p = (
            p.draw_style(cm.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .bar_alignment(cm.BarAlignment.AFTER)
            .line_width(1)
        )
    else:
        p = p.draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
    if stack:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return p


def number(
    title: str,
    unit: str,
    *,
    description: str = "",
    width: int = 6,
    height: int = 5,
    decimals: int | None = 1,
) -> stat.Panel:
    """A stat panel showing one value per series (the last row of each)."""
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def states(title: str, *, description: str = "", width: int = 24) -> statetimeline.Panel:
    """A state timeline of a text field (operating mode, resolution)."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(width)
        .height(6)
        .show_value(cm.VisibilityMode.AUTO)
        .merge_values(True)
    )


def grid(title: str, *, description: str = "", width: int = 24, height: int = 8) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(width)
        .height(height)
    )
