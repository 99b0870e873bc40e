"""Grafana dashboards as code: the pipeline overview and the per-stage board.

Built with the grafana-foundation-sdk builders from the metrics of `streams.metrics`, and written
as JSON to `deploy/grafana/dashboards/`, where Grafana's file provisioning loads them
(`deploy/grafana/provisioning/`). The JSON is committed; `make dashboards` regenerates it and
`python -m streams.dashboards --check` (run by the unit tests) fails when it is stale.

Every query goes through the `datasource` variable, whose default is the provisioned Prometheus
(uid `DATASOURCE_UID`). Rates are over `RATE`: four scrapes at Prometheus's default 15 s interval,
and wide enough for the 5-minute view of a pipeline whose inputs come in bursts.
"""

from __future__ import annotations

import itertools
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # The SDK warns at import that dashboard v2 is preferred to the classic (v1) dashboard. v1
    # is the JSON that Grafana's file provisioning loads in every version: it is the one used.
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builder
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models import prometheus as prometheus_model

from streams import generated

DATASOURCE_UID = "cci-prometheus"
DATASOURCE_NAME = "CCI Prometheus"
OVERVIEW_UID = "cci-overview"
STAGE_UID = "cci-stage"
TAG = "cci"
RATE = "5m"
OUT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
REGENERATE = "make dashboards"

DS = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
PER_SECOND = "suffix:/s"
GRID_WIDTH = 24


def _query(
    expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False
) -> prometheus.Dataquery:
    q = (
        prometheus.Dataquery()
        .datasource(DS)
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .editor_mode(prometheus_model.QueryEditorMode.CODE)
    )
    if instant:
        return q.instant().format(prometheus_model.PromQueryFormat.TABLE)
    return q.range()


def _targets(queries: Sequence[tuple[str, str]]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    """(expression, legend) pairs as queries A, B, C…"""
    return [_query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


class _Board:
    """Numbers the panels of one dashboard: stable ids, so that links and the JSON stay put."""

    def __init__(self) -> None:
        self._ids: Iterator[int] = itertools.count(1)

    def row(self, title: str) -> dashboard.Row:
        return dashboard.Row(title).id(next(self._ids))

    def timeseries(
        self,
        title: str,
        description: str,
        queries: Sequence[tuple[str, str]],
        unit: str,
        width: int = 12,
        height: int = 8,
        stacked: bool = False,
    ) -> timeseries.Panel:
        legend = (
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        panel = (
            timeseries.Panel()
            .id(next(self._ids))
            .title(title)
            .description(description)
            .datasource(DS)
            .targets(_targets(queries))
            .unit(unit)
            .min(0)
            .span(width)
            .height(height)
            .legend(legend)
            .tooltip(
                common_builder.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
            .line_width(1)
            .fill_opacity(10)
            .show_points(common.VisibilityMode.NEVER)
        )
        if stacked:
            panel = panel.stacking(
                common_builder.StackingConfig().mode(common.StackingMode.NORMAL)
            ).fill_opacity(40)
        return panel

    def stat(
        self,
        title: str,
        description: str,
        expr: str,
        unit: str,
        width: int = 6,
        height: int = 4,
        decimals: int = 2,
        more: Sequence[tuple[str, str]] = (),
    ) -> stat.Panel:
        """The last value of `expr`, and of the (expression, legend) pairs of `more`."""
        return (
            stat.Panel()
            .id(next(self._ids))
            .title(title)
            .description(description)
            .datasource(DS)
            .targets(_targets([(expr, title), *more]))
            .unit(unit)
            .decimals(decimals)
            .span(width)
            .height(height)
            .graph_mode(common.BigValueGraphMode.AREA)
            .color_mode(common.BigValueColorMode.VALUE)
            .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        )

    def table(
        self, title: str, description: str, expr: str, label: str, value: str, width: int = 12
    ) -> table.Panel:
        """An instant query shown as one row per `label`, its value in a column named `value`."""
        return (
            table.Panel()
            .id(next(self._ids))
            .title(title)
            .description(description)
            .datasource(DS)
            .targets([_query(expr, "{{" + label + "}}", instant=True)])
            .span(width)
            .height(8)
            .with_transformation(
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value": value},
                        "indexByName": {label: 0, "Value": 1},
                    },
                )
            )
            .sort_by([common_builder.TableSortByFieldState().display_name(value).desc(True)])
        )


def _datasource_variable() -> dashboard.DatasourceVariable:
    return (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(model.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def _links() -> list[cogbuilder.Builder[model.DashboardLink]]:
    return [
        dashboard.DashboardLink("CCI")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(False)
        .keep_time(True)
    ]


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(_links())
        .with_variable(_datasource_variable())
    )


def _rate(selector: str, by: str = "") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({selector}[{RATE}]))"


def _quantile(q: float, bucket_selector: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({bucket_selector}[{RATE}])))"


LODGED = _rate(
    'cci_stage_inputs_total{stage="intake", topic="declarations.lodged", '
    'outcome=~"processed|failed"}'
)
ACCEPTED = _rate('cci_intake_outcomes_total{outcome="accepted"}')
REJECTED = _rate('cci_intake_outcomes_total{outcome="rejected"}')
RELEASED = _rate('cci_decision_latency_seconds_count{outcome="released"}')
LATENCY = 'cci_decision_latency_seconds_bucket{outcome="released"}'


def overview() -> dict[str, Any]:
    """The whole pipeline: flow per second, rejections, decision latency, controls, backlog."""
    b = _Board()
    d = _dashboard(
        OVERVIEW_UID,
        "CCI / Overview",
        "Declarations through the clearance pipeline: lodged, accepted, rejected, released; "
        "why they are rejected; how long a decision takes; controls; the backlog.",
    )
    d = _section(
        d,
        b.row("Flow"),
        b.stat(
            "Lodged",
            "Declarations lodged per second: messages on declarations.lodged that the intake "
            "stage processed or failed (redeliveries excluded; garbage sent to the dead "
            "letters included).",
            LODGED,
            PER_SECOND,
        ),
        b.stat(
            "Accepted",
            "Declarations accepted per second by the intake stage (an MRN allocated).",
            ACCEPTED,
            PER_SECOND,
        ),
        b.stat(
            "Rejected",
            "Declarations rejected per second by the intake stage (IE456 sent to the trader).",
            REJECTED,
            PER_SECOND,
        ),
        b.stat(
            "Released",
            "Declarations released per second by the decision stage.",
            RELEASED,
            PER_SECOND,
        ),
        b.timeseries(
            "Declarations per second",
            "Lodged, accepted and rejected at intake; released, not released and "
            "invalidated at decision.",
            [
                (LODGED, "lodged"),
                (ACCEPTED, "accepted"),
                (REJECTED, "rejected"),
                (
                    _rate("cci_decision_latency_seconds_count", "outcome"),
                    "{{outcome}}",
                ),
            ],
            PER_SECOND,
            width=GRID_WIDTH,
        ),
    )
    d = _section(
        d,
        b.row("Rejections"),
        b.timeseries(
            "Rejections by rule",
            "Rule failures of rejected declarations per second, by rule code (R010–R090). A "
            "rejected declaration counts once for every rule it fails.",
            [(_rate("cci_rejections_total", "rule"), "{{rule}}")],
            PER_SECOND,
            stacked=True,
        ),
        b.table(
            "Rule failures in the time range",
            "Rule failures of rejected declarations over the dashboard's time range, most "
            "frequent first.",
            "sort_desc(sum by (rule) (increase(cci_rejections_total[$__range])))",
            "rule",
            "failures",
        ),
    )
    d = _section(
        d,
        b.row("Decision"),
        b.timeseries(
            "Decision latency of released declarations",
            "From lodging (event time) to release, p50, p95 and p99 over "
            f"{RATE}, from the histogram of the decision stage.",
            [
                (_quantile(0.5, LATENCY), "p50"),
                (_quantile(0.95, LATENCY), "p95"),
                (_quantile(0.99, LATENCY), "p99"),
            ],
            "s",
        ),
        b.timeseries(
            "Decision latency p95 by outcome",
            "From lodging to the terminal outcome (released, not released, invalidated), "
            "95th percentile.",
            [
                (
                    "histogram_quantile(0.95, sum by (outcome, le) "
                    f"(rate(cci_decision_latency_seconds_bucket[{RATE}])))",
                    "{{outcome}}",
                )
            ],
            "s",
        ),
        b.timeseries(
            "Declarations by state",
            "Declarations the decision workers hold, by state of the decision (spec §8).",
            [("sum by (state) (cci_declarations)", "{{state}}")],
            "short",
        ),
        b.timeseries(
            "Timers pending",
            "Timer deadlines (COP response, lapse) the decision workers wait for.",
            [("sum(cci_timers_pending)", "pending")],
            "short",
        ),
    )
    d = _section(
        d,
        b.row("Controls"),
        b.timeseries(
            "Risk assessments by control",
            "Risk assessments per second by the control they select (SCO control level).",
            [(_rate("cci_controls_total", "control"), "{{control}}")],
            PER_SECOND,
            stacked=True,
        ),
        b.timeseries(
            "Under control",
            "Declarations under control now, waiting for the control result.",
            [('sum(cci_declarations{state="UNDER_CONTROL"})', "under control")],
            "short",
        ),
    )
    d = _section(
        d,
        b.row("Backlog"),
        b.timeseries(
            "Backlog by consumer group",
            "Inputs not yet processed, summed over the partitions of each consumer group "
            "(one group per stage and namespace).",
            [("sum by (group) (cci_consumer_lag_messages)", "{{group}}")],
            "short",
        ),
        b.timeseries(
            "Oldest unprocessed input by consumer group",
            "Age of the oldest input not yet processed, worst partition of each group.",
            [("max by (group) (cci_consumer_lag_seconds)", "{{group}}")],
            "s",
        ),
    )
    return _to_dict(d)


def stage_board() -> dict[str, Any]:
    """One stage (the `stage` variable): rate, errors, duration, lag, dead letters, rebalances."""
    b = _Board()
    stage = 'stage="$stage"'
    group = 'group=~".+-$stage"'  # consumer groups are `<namespace>-<stage>`
    inputs = f"cci_stage_inputs_total{{{stage}}}"
    # process_* carry no stage label: keep the instances that expose this stage's counters.
    this_stage = f"on (instance) group by (instance) ({inputs})"
    # A worker that stopped has no current series: the last hour still tells its stage.
    seen = f"on (instance) group by (instance) (last_over_time({inputs}[1h]))"
    d = _dashboard(
        STAGE_UID,
        "CCI / Stage",
        "One stage of the pipeline: inputs, errors, processing time, consumer lag, dead "
        "letters, rebalances and its worker processes.",
    ).with_variable(
        dashboard.QueryVariable("stage")
        .label("Stage")
        .datasource(DS)
        .query("label_values(cci_stage_inputs_total, stage)")
        .definition("label_values(cci_stage_inputs_total, stage)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text="intake", value="intake"))
    )
    failed = _rate(f'cci_stage_inputs_total{{{stage}, outcome="failed"}}')
    d = _section(
        d,
        b.row("Rate"),
        b.stat(
            "Inputs",
            "Inputs processed per second.",
            _rate(f'cci_stage_inputs_total{{{stage}, outcome="processed"}}'),
            PER_SECOND,
        ),
        b.stat(
            "Failed",
            "Share of inputs that failed (sent to the dead letters after an error).",
            f"{failed} / {_rate(inputs)}",
            "percentunit",
        ),
        b.stat(
            "Backlog",
            "Inputs not yet processed, all partitions.",
            f"sum(cci_consumer_lag_messages{{{group}}})",
            "short",
            decimals=0,
        ),
        b.stat(
            "Workers up",
            "Worker processes of this stage that Prometheus scrapes successfully (up), of "
            "those that reported this stage in the last hour (seen).",
            f"sum(up and {seen})",
            "short",
            decimals=0,
            more=[(f"count(up and {seen})", "seen")],
        ),
        b.timeseries(
            "Inputs by topic and outcome",
            "Inputs per second by input topic and outcome: processed, failed, or duplicate "
            "(delivered again after a restart and skipped).",
            [(_rate(inputs, "topic, outcome"), "{{topic}} {{outcome}}")],
            PER_SECOND,
            width=GRID_WIDTH,
        ),
    )
    d = _section(
        d,
        b.row("Errors"),
        b.timeseries(
            "Errors by kind",
            "Inputs that failed per second, by exception class.",
            [(_rate(f"cci_stage_errors_total{{{stage}}}", "kind"), "{{kind}}")],
            PER_SECOND,
            stacked=True,
        ),
        b.timeseries(
            "Dead letters by reason",
            "Messages sent to the stage's dead-letter topic per second, by reason "
            "(undecodable, unknown schema, processing error…).",
            [(_rate(f"cci_stage_dead_letters_total{{{stage}}}", "reason"), "{{reason}}")],
            PER_SECOND,
            stacked=True,
        ),
    )
    buckets = f"cci_stage_processing_seconds_bucket{{{stage}}}"
    d = _section(
        d,
        b.row("Duration"),
        b.timeseries(
            "Processing time",
            "Time to process one input, its outputs sent: p50, p95, p99 and mean.",
            [
                (_quantile(0.5, buckets), "p50"),
                (_quantile(0.95, buckets), "p95"),
                (_quantile(0.99, buckets), "p99"),
                (
                    f"{_rate(f'cci_stage_processing_seconds_sum{{{stage}}}')} / "
                    f"{_rate(f'cci_stage_processing_seconds_count{{{stage}}}')}",
                    "mean",
                ),
            ],
            "s",
            width=GRID_WIDTH,
        ),
    )
    d = _section(
        d,
        b.row("Lag"),
        b.timeseries(
            "Consumer lag (messages)",
            "Inputs not yet processed by input topic, all partitions.",
            [(f"sum by (topic) (cci_consumer_lag_messages{{{group}}})", "{{topic}}")],
            "short",
        ),
        b.timeseries(
            "Consumer lag (age)",
            "Age of the oldest input not yet processed, worst partition of each topic.",
            [(f"max by (topic) (cci_consumer_lag_seconds{{{group}}})", "{{topic}}")],
            "s",
        ),
    )
    d = _section(
        d,
        b.row("Rebalances and processes"),
        b.timeseries(
            "Rebalances",
            "Partition assignments each worker received, per 15 minutes: a steady rise "
            "means workers joining and leaving the group.",
            [
                (
                    f"sum by (instance) (increase(cci_rebalances_total{{{stage}}}[15m]))",
                    "{{instance}}",
                )
            ],
            "short",
            width=8,
        ),
        b.timeseries(
            "CPU",
            "CPU time per second of each worker process of the stage.",
            [
                (
                    f"sum by (instance) (rate(process_cpu_seconds_total[{RATE}]) and {this_stage})",
                    "{{instance}}",
                )
            ],
            "short",
            width=8,
        ),
        b.timeseries(
            "Memory",
            "Resident memory of each worker process of the stage.",
            [
                (
                    f"sum by (instance) (process_resident_memory_bytes and {this_stage})",
                    "{{instance}}",
                )
            ],
            "bytes",
            width=8,
        ),
    )
    broker_seconds = f"rate(cci_broker_request_seconds_bucket[{RATE}]) and {this_stage}"
    d = _section(
        d,
        b.row("Broker"),
        b.timeseries(
            "Broker answers",
            "1 when the worker's last metadata request to the Kafka cluster was answered, "
            "0 when it was refused or timed out (checked every few seconds).",
            [(f"min by (instance) (cci_broker_up and {this_stage})", "{{instance}}")],
            "short",
        ),
        b.timeseries(
            "Broker round trip",
            "Time the Kafka cluster takes to answer a worker's metadata request, p99 per "
            "worker: a slow broker slows every commit of the stage.",
            [
                (
                    f"histogram_quantile(0.99, sum by (instance, le) ({broker_seconds}))",
                    "{{instance}}",
                )
            ],
            "s",
        ),
    )
    return _to_dict(d)


def _section(
    board: dashboard.Dashboard, row: dashboard.Row, *panels: cogbuilder.Builder[model.Panel]
) -> dashboard.Dashboard:
    """An expanded row and its panels. Grafana reads the panels of an expanded row from the
    dashboard's own list, after the row (the SDK's `Row.with_panel` collapses the row)."""
    board = board.with_row(row)
    for panel in panels:
        board = board.with_panel(panel)
    return board


def _to_dict(builder: dashboard.Dashboard) -> dict[str, Any]:
    encoded: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def _dump(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard, the same bytes for the same code."""
    return {
        f"{OVERVIEW_UID}.json": _dump(overview()),
        f"{STAGE_UID}.json": _dump(stage_board()),
    }


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """The files of `render()` that are missing from `out_dir` or differ from it."""
    return generated.stale(render(), out_dir)


GENERATOR = generated.Generator(
    prog="python -m streams.dashboards",
    description="Write the Grafana dashboards to deploy/grafana/dashboards.",
    what="dashboard",
    regenerate=REGENERATE,
    render=lambda _directory: render(),
    default_dir=OUT_DIR,
    option_help="directory of the JSON files",
)
main = GENERATOR.main


if __name__ == "__main__":
    sys.exit(main())
