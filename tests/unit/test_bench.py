"""The pure parts of the benchmark: machine facts, /proc parsing, saturation, ratios, reports.
Nothing here times anything: speed is measured by `make bench`, never asserted in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.bench import procstat
from streams.bench.cli import parse_rates, parse_worker_counts
from streams.bench.machine import cpu_model, describe, memory_total_bytes
from streams.bench.micro import MicroResult
from streams.bench.report import (
    bench_markdown,
    bench_report,
    console_tables,
    micro_markdown,
    micro_report,
    scaling_markdown,
    scaling_report,
    settings_text,
    stages_markdown,
    stages_report,
    write,
)
from streams.bench.results import (
    CeilingResult,
    CounterSample,
    StageDrain,
    StepResult,
    bottleneck,
    ceiling_ratios,
    drained,
    framework_ceiling,
    group_lag,
    group_totals,
    increases,
    latency_at_half_peak,
    latency_summary,
    peak,
    saturation,
    stage_capacity,
    stage_drain,
    worker_deltas,
)
from streams.bench.steps import broker_settled, ledger_for, pump
from streams.cli import CliError
from streams.config import Settings
from streams.kafka_io import Received
from tests.unit.test_demo import SCHEMAS, accepted

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4\n"
MACHINE = {"cores": 2, "cpu_model": "Test CPU", "python": "3.11.7", "git_commit": "abc123"}


def test_cpu_model_reads_the_first_model_name() -> None:
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Processor"


def test_cpu_model_falls_back_to_the_board_model_on_arm() -> None:
    assert cpu_model(ARM_CPUINFO) == "Raspberry Pi 4"
    assert cpu_model("processor : 0\n") is None


def test_memory_total_in_bytes() -> None:
    assert memory_total_bytes("MemTotal:       24000000 kB\nMemFree: 1 kB\n") == 24000000 * 1024
    assert memory_total_bytes("nothing") is None


def test_describe_names_cores_model_and_commit() -> None:
    line = describe(MACHINE)
    assert "2 cores" in line and "Test CPU" in line and "abc123" in line


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # A command name with spaces and a parenthesis must not shift the fields.
    line = "4242 (py (x) thon) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 3 4 20 0 5 0 1 2 3"
    parsed = procstat.parse_stat(line)
    assert (parsed.pid, parsed.ppid, parsed.user_ticks, parsed.system_ticks) == (4242, 17, 250, 50)
    assert parsed.cpu_seconds == pytest.approx(300 / procstat.TICKS)


def test_own_process_is_readable() -> None:
    found = procstat.stat(__import__("os").getpid())
    assert found is not None and found.cpu_seconds >= 0


def test_latency_summary_uses_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert latency_summary(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert latency_summary([]) is None
    # Nearest rank never interpolates: the answer is one of the values.
    assert latency_summary([10.0, 1000.0]) == {"p50": 10.0, "p95": 1000.0, "p99": 1000.0}


def step(rate: float, lodged: int, decided: int, **extra: object) -> StepResult:
    return StepResult(rate=rate, seconds=10.0, lodged=lodged, decided=decided, **extra)  # type: ignore[arg-type]


def test_no_saturation_while_decided_follows_offered() -> None:
    steps = [step(50, 500, 400), step(100, 1000, 790), step(200, 2000, 1560)]
    assert saturation(steps) is None


def test_saturation_when_decided_share_falls() -> None:
    steps = [step(50, 500, 400), step(100, 1000, 800), step(200, 2000, 1000)]
    reason = saturation(steps)
    assert reason is not None and "decided 100/s" in reason


def test_saturation_when_a_stage_ends_far_behind() -> None:
    steps = [
        step(50, 500, 400),
        step(100, 1000, 800, lag={"intake": 20, "risk": 3000}, inputs={"risk": 900}),
    ]
    reason = saturation(steps)
    assert reason is not None and reason.startswith("risk ended the step 3000 inputs behind")


def test_latency_target_is_read_at_the_first_step_offered_half_the_peak_or_more() -> None:
    steps = [
        step(20, 200, 190, latencies_ms=[300.0] * 99 + [500.0]),
        step(40, 400, 370, latencies_ms=[400.0] * 98 + [900.0, 5000.0]),
        step(80, 800, 700, latencies_ms=[2000.0]),
        step(100, 1000, 650, latencies_ms=[9000.0]),
    ]
    # Peak 70/s decided: half is 35/s, so the 40/s step, not the lighter 20/s one.
    half = latency_at_half_peak(steps)
    assert half is not None
    assert (half["peak_decided_per_second"], half["half"], half["rate"]) == (70.0, 35.0, 40)
    assert (half["p99_ms"], half["met"]) == (900.0, True)
    steps[1] = step(40, 400, 370, latencies_ms=[400.0] * 97 + [1100.0] * 3)
    assert latency_at_half_peak(steps) == {**half, "p99_ms": 1100.0, "met": False}
    assert latency_at_half_peak([]) is None


def test_a_small_backlog_is_not_saturation() -> None:
    steps = [step(50, 500, 400, lag={"intake": 100, "decision": 300}, inputs={"decision": 2500})]
    assert saturation(steps) is None


def test_saturation_when_the_generator_falls_short() -> None:
    reason = saturation([step(3200, 20000, 16000)])
    assert reason is not None and "load generator" in reason


def test_first_step_alone_is_judged_by_backlog_only() -> None:
    assert saturation([step(50, 500, 100)]) is None
    assert saturation([]) is None


def test_peak_is_the_step_deciding_most() -> None:
    steps = [step(50, 500, 400), step(100, 1000, 800), step(200, 2000, 700)]
    best = peak(steps)
    assert best is not None and best.rate == 100
    assert peak([]) is None


def ceilings() -> list[CeilingResult]:
    return [
        CeilingResult("client", "loop", "at-least-once", 1001, 0.5, 1.0, 0.4, 1000),
        CeilingResult("faust-eos", "agent", "exactly-once", 1001, 2.0, 8.0, 2.5, 1000),
        CeilingResult("faust-alo", "bare", "at-least-once", 1001, 1.6, 8.0, 2.0, 1000),
    ]


def test_ceiling_rates() -> None:
    client = ceilings()[0]
    assert client.per_second == pytest.approx(2000.0)
    assert client.per_cpu_second == pytest.approx(2500.0)
    assert CeilingResult("x", "", "").per_second == 0.0


def test_framework_ceiling_prefers_the_stages_guarantee() -> None:
    found = framework_ceiling(ceilings())
    assert found is not None and found.name == "faust-eos"
    alo = framework_ceiling([ceilings()[2]])
    assert alo is not None and alo.name == "faust-alo"
    assert framework_ceiling([ceilings()[0]]) is None


def test_stage_ratios_against_the_framework_ceiling() -> None:
    steps = [
        step(
            50,
            500,
            400,
            inputs={"intake": 500, "risk": 450, "cop-simulator": 900},
            cpu_seconds={"intake": 2.0},
        ),
        step(100, 1000, 800, inputs={"intake": 1000, "risk": 900}, cpu_seconds={"intake": 5.0}),
    ]
    ratios = ceiling_ratios(steps, framework_ceiling(ceilings()))
    assert ratios["intake"]["inputs_per_second"] == 100.0
    assert ratios["intake"]["of_ceiling"] == pytest.approx(0.2)
    assert ratios["intake"]["inputs_per_cpu_second"] == 200.0
    assert ratios["intake"]["of_ceiling_per_cpu_second"] == pytest.approx(0.5)
    assert "inputs_per_cpu_second" not in ratios["risk"]  # its CPU was not measured
    assert "cop-simulator" not in ratios
    assert ceiling_ratios(steps, None) == {}


def test_group_lag_counts_uncommitted_partitions_from_zero() -> None:
    ends = {("t", 0): 10, ("t", 1): 5, ("u", 0): 7}
    assert group_lag({("t", 0): 8, ("t", 1): 5}, ends) == 2 + 0 + 7
    assert group_lag({("t", 0): 12}, {("t", 0): 10}) == 0


def test_parse_rates() -> None:
    assert parse_rates("50, 100,200") == [50.0, 100.0, 200.0]
    for bad in ("", "0,10", "100,50", "a,b", "10,10"):
        with pytest.raises(CliError):
            parse_rates(bad)


def test_bench_report_json_markdown_and_png(tmp_path: Path) -> None:
    steps = [
        step(
            50,
            500,
            400,
            outcomes={"released": 300, "rejected": 100},
            latencies_ms=[100.0, 200.0, 900.0],
            cpu_seconds={"intake": 2.0, "broker": 1.0},
            inputs={"intake": 500},
            lag={"intake": 0, "decision": 12},
        ),
        step(100, 1000, 500, latencies_ms=[300.0], saturated="decided 50/s"),
    ]
    config = {"budget_seconds": 60, "partitions": 2, "commit_interval": 0.2, "idle_commit": 0.05}
    document = bench_report(MACHINE, config, ceilings(), steps, "saturated", 12.0)
    assert document["peak"]["rate"] == 100  # 50 decided/s against 40 at the first step
    assert document["steps"][0]["latency_ms"] == {"p50": 200.0, "p95": 900.0, "p99": 900.0}
    assert document["steps"][0]["cpu_share_of_one_core"] == {"intake": 0.2, "broker": 0.1}
    assert document["framework_ceiling"] == "faust-eos"
    assert "latencies_ms" not in document["steps"][0]
    markdown = bench_markdown(document)
    assert "| 50 (50) | 40 | 200 | 900 | 900 |" in markdown
    assert "decision 12" in markdown and "Test CPU" in markdown
    assert "2 partitions per topic, commit every 0.2 s, or 0.05 s after the input" in markdown
    # Peak 50/s: half is 25/s, read at the 50/s step, whose p99 is 900 ms.
    assert document["latency_at_half_peak"]["rate"] == 50
    assert "the 50/s step, p99 900 ms against a target of 1000 ms: met." in markdown
    written = write(document, markdown, "run", tmp_path)
    assert [p.name for p in written] == ["run.json", "run.md", "run.png"]
    assert json.loads(written[0].read_text())["machine"]["cores"] == 2
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ceilings_only_report_has_no_png(tmp_path: Path) -> None:
    document = bench_report(MACHINE, {}, ceilings(), [], "ceilings only", 0.0)
    markdown = bench_markdown(document)
    assert "Settings: not recorded." in markdown
    written = write(document, markdown, "c", tmp_path)
    assert [p.name for p in written] == ["c.json", "c.md"]


def test_micro_report() -> None:
    results = [MicroResult("validation", "rules", 1000, 0.5, 0.6)]
    described = {"declarations": 100, "valid": 90, "seed": 7, "mean_encoded_bytes": 500.0}
    document = micro_report(MACHINE, results, described)
    row = document["results"][0]
    assert row["per_core_per_second"] == 2000.0 and row["cpu_micros_per_operation"] == 500.0
    assert "| validation | rules | 2000 | 500.0 | 1667 |" in micro_markdown(document)


GROUPS = {
    "intake": ["intake-0", "intake-1"],
    "risk": ["risk-0", "risk-1"],
    "broker": ["broker"],
}


def test_worker_deltas_keep_each_process_of_a_stage() -> None:
    before = {"intake-0": 10.0, "intake-1": 4.0, "risk-0": 1.0, "risk-1": 1.0, "broker": 50.0}
    after = {"intake-0": 12.5, "intake-1": 5.0, "risk-0": 1.25, "risk-1": 2.0, "broker": 51.0}
    assert worker_deltas(before, after, GROUPS) == {
        "intake": [2.5, 1.0],
        "risk": [0.25, 1.0],
        "broker": [1.0],
    }


def test_cpu_and_inputs_of_a_stage_are_its_processes_summed() -> None:
    before = {"intake-0": 10.0, "intake-1": 4.0, "risk-0": 100, "risk-1": 0}
    after = {"intake-0": 12.504, "intake-1": 5.0, "risk-0": 160, "risk-1": 45}
    totals = group_totals(worker_deltas(before, after, GROUPS))
    assert totals == {"intake": 3.5, "risk": 105.0}  # the broker was not read: left out
    assert group_totals({"risk": [60, 45]}, 0) == {"risk": 105}


def test_a_stage_with_a_process_unread_has_no_total() -> None:
    # One copy that did not answer must not pass the other's count off as the stage's.
    before = {"intake-0": 1.0, "intake-1": 1.0, "risk-0": 1.0}
    after = {"intake-0": 2.0, "risk-0": 3.0, "risk-1": 9.0}
    assert worker_deltas(before, after, GROUPS) == {}
    assert worker_deltas(before, after, {"none": []}) == {}


def test_parse_worker_counts() -> None:
    assert parse_worker_counts("1, 2,4") == [1, 2, 4]
    for bad in ("", "1", "2,1", "1,1", "0,1", "1,5", "a,b", "1.5,2"):
        with pytest.raises(CliError):
            parse_worker_counts(bad)


def two_worker_steps() -> list[StepResult]:
    return [
        step(
            50,
            500,
            400,
            cpu_seconds={"intake": 3.0, "broker": 1.0, "cop-simulator": 0.5},
            inputs={"intake": 500},
            latencies_ms=[120.0],
            worker_inputs={"intake": [260, 240]},
            worker_cpu_seconds={"intake": [1.75, 1.25]},
        ),
        step(
            100,
            1000,
            500,
            cpu_seconds={"intake": 6.0, "risk": 4.0},
            worker_inputs={"intake": [1000, 0]},
            saturated="decided 50/s",
        ),
    ]


def test_report_shows_the_workers_per_stage(tmp_path: Path) -> None:
    config = {"budget_seconds": 60, "workers": 2}
    document = bench_report(MACHINE, config, [], two_worker_steps(), "saturated", 5.0)
    assert document["config"]["workers"] == 2
    assert document["steps"][0]["worker_inputs"] == {"intake": [260, 240]}
    markdown = bench_markdown(document)
    assert "## Steps of offered load (2 workers per stage)" in markdown
    assert "| 50 | 260 / 240 (0.17 / 0.12) |" in markdown
    assert "| 100 | 1000 / 0 |" in markdown  # a copy without partitions shows as 0
    tables = console_tables(document)
    assert tables[-1].title.startswith("steps, 2 workers per stage")
    assert [p.name for p in write(document, markdown, "w2", tmp_path)][-1] == "w2.png"
    # A file written before --workers reads as one worker, without the per-process table.
    del document["config"]["workers"]
    markdown = bench_markdown(document)
    assert "(1 worker per stage)" in markdown and "Per worker process" not in markdown


def bench_document(
    workers: int, rates_decided: list[tuple[float, int]], stopped: str
) -> dict[str, Any]:
    steps = [step(rate, round(rate * 10), decided) for rate, decided in rates_decided]
    if stopped.startswith("saturated"):
        steps[-1].saturated = stopped
    config = {"workers": workers, "load_average_at_end": [1.5, 1.2, 1.0]}
    return bench_report(MACHINE, config, [], steps, stopped, 20.0)


def test_scaling_comparison_and_its_ratios(tmp_path: Path) -> None:
    one = bench_document(1, [(50, 450), (100, 900), (200, 800)], "saturated at 200/s")
    one["steps"][1]["cpu_share_of_one_core"] = {"intake": 0.4, "risk": 0.3, "broker": 0.5}
    two = bench_document(2, [(50, 450), (100, 900), (200, 1800), (400, 1500)], "saturated")
    comparison = scaling_report(
        MACHINE,
        {"budget_seconds": 600, "step_seconds": 10, "rates": [50, 100, 200, 400], "partitions": 6},
        [(one, "bench-w1-x"), (two, "bench-w2-x")],
    )
    first, second = comparison["runs"]
    assert (first["workers"], first["saturated_at"], first["kept_up_to"]) == (1, 200, 100)
    assert (first["peak_rate"], first["peak_decided_per_second"]) == (100, 90.0)
    assert first["stages_cores_at_peak"] == 0.7  # the broker is not a stage
    assert (second["saturated_at"], second["peak_decided_per_second"]) == (400, 180.0)
    assert comparison["ratios"] == {
        "2/1": {"peak_decided_per_second": 2.0, "saturated_at": 2.0, "kept_up_to": 2.0}
    }
    markdown = scaling_markdown(comparison)
    assert "| 1 | 200 | 100 | 90 | 100 | 0.70 | 1.5 1.2 1.0 |" in markdown
    assert "| 2/1 workers | 2.00 | 2.00 | 2.00 |" in markdown
    written = write(comparison, markdown, "scaling", tmp_path)
    assert [p.name for p in written] == ["scaling.json", "scaling.md"]  # no picture to draw
    assert json.loads(written[0].read_text())["ratios"]["2/1"]["peak_decided_per_second"] == 2.0
    assert console_tables(comparison)[0].row_count == 3


def test_scaling_without_saturation_has_no_saturation_ratio() -> None:
    one = bench_document(1, [(50, 450)], "the time budget leaves no room for the 100/s step")
    two = bench_document(2, [], "the stages or the simulator did not join their groups")
    comparison = scaling_report(MACHINE, {}, [(one, "a"), (two, "b")])
    assert comparison["runs"][0]["saturated_at"] is None
    assert comparison["runs"][1]["peak_decided_per_second"] is None
    assert comparison["ratios"]["2/1"] == {
        "peak_decided_per_second": None,
        "saturated_at": None,
        "kept_up_to": None,
    }


# `cci bench stages`: the end of a drain, its numbers, the capacity and the report.


def samples(*counts: int | None, every: float = 0.25) -> list[CounterSample]:
    """A counter read every `every` seconds; the worker's CPU grows 1 ms per input, the
    broker's half that."""
    found = []
    for index, count in enumerate(counts):
        cpu = None if count is None else 0.5 + count / 1000
        broker = None if count is None else 10 + count / 2000
        found.append(CounterSample(index * every, count, cpu, broker))
    return found


def test_the_clock_runs_from_the_first_increase_to_the_last() -> None:
    # Not answering while it starts, then standing at 0 while it joins its group.
    series = samples(None, None, 0, 0, 100, 250, 400, 400, 400)
    assert increases(series) == (4, 6)
    assert increases(samples(None, 0, 0)) is None


def test_an_unanswered_scrape_is_not_a_counter_going_back() -> None:
    assert increases(samples(0, 100, None, 200, 200)) == (1, 3)


def test_drained_only_when_every_input_is_handled_and_the_counter_stood_still() -> None:
    moving = [0, 100, 250, 400]
    # Reached the count, but not quiet for 3 s yet (11 samples after the last increase).
    assert not drained(samples(*moving, *[400] * 11), 400)
    assert drained(samples(*moving, *[400] * 12), 400)
    # Quiet for long, but short of what was available: still joining or stalled, not done.
    assert not drained(samples(*moving[:-1], *[250] * 40), 400)
    # More than available (inputs delivered twice around a rebalance) is done too.
    assert drained(samples(*moving, 410, *[410] * 12), 400)
    # A counter that never moved never drained, however quiet.
    assert not drained(samples(*[0] * 40), 0)
    assert not drained([], 10)


def test_a_drain_counts_inputs_time_and_cpu_between_the_same_two_samples() -> None:
    series = samples(None, 0, 0, 100, 250, 400, 400)
    result = stage_drain("intake", 400, series, started=-1.0, finished=True)
    assert (result.inputs, result.window_inputs, result.error) == (400, 300, None)
    assert result.seconds == pytest.approx(0.5)  # sample 3 to sample 5
    assert result.startup_seconds == pytest.approx(1.75)
    assert result.per_second == pytest.approx(600.0)
    assert result.cpu_ms_per_input == pytest.approx(1.0)
    assert result.broker_cpu_ms_per_input == pytest.approx(0.5)
    assert result.as_dict()["cores_busy"] == pytest.approx(0.6)


def test_a_drain_cut_by_the_timeout_or_that_never_started_says_so() -> None:
    cut = stage_drain("risk", 900, samples(0, 100, 300), started=0.0, finished=False)
    assert cut.error == "300 of 900 inputs before the timeout"
    idle = stage_drain("risk", 900, samples(None, 0, 0), started=0.0, finished=False)
    assert idle.error == "no input handled" and idle.per_second == 0.0
    assert idle.cpu_ms_per_input is None
    # All of it within one scrape interval: nothing to time.
    burst = stage_drain("duties", 5, samples(0, 5, *[5] * 12), started=0.0, finished=True)
    assert burst.error is not None and "raise --count" in burst.error


def drains() -> list[StageDrain]:
    return [
        StageDrain("intake", 1000, 1000, 900, 3.0, 5.0, 3.0, 0.9),  # 300/s, 3.33 ms per input
        StageDrain("risk", 900, 900, 800, 1.0, 5.0, 0.8),  # 800/s
        StageDrain("decision", 2700, 2700, 2400, 4.0, 5.0, None),  # 600/s, CPU unread
    ]


def test_stage_capacity_against_the_ceiling_and_in_declarations() -> None:
    capacity = stage_capacity(drains(), framework_ceiling(ceilings()), lodged=1000)
    intake, risk, decision = capacity["intake"], capacity["risk"], capacity["decision"]
    # The faust-eos ceiling of the fixture: 1000 messages in 2 s, 400 per CPU second.
    assert intake["of_ceiling"] == pytest.approx(0.6) and intake["meets_target"] is True
    assert intake["inputs_per_declaration"] == 1.0
    assert intake["declarations_per_second"] == 300.0
    assert intake["inputs_per_cpu_second"] == pytest.approx(300.0)
    assert intake["of_ceiling_per_cpu_second"] == pytest.approx(0.75)
    assert risk["inputs_per_declaration"] == 0.9  # only the accepted reach it
    assert risk["declarations_per_second"] == pytest.approx(888.9)
    # About three inputs per accepted declaration: acceptance, risk and duties.
    assert decision["inputs_per_declaration"] == 2.7
    assert decision["declarations_per_second"] == pytest.approx(222.2)
    assert decision["of_ceiling"] == pytest.approx(1.2)
    assert "inputs_per_cpu_second" not in decision
    slowest = bottleneck(capacity)
    assert slowest is not None and slowest[0] == "decision"
    assert slowest[1] == pytest.approx(222.2)


def test_stage_capacity_without_a_ceiling_or_a_rate() -> None:
    capacity = stage_capacity([StageDrain("intake", 10)], None, lodged=10)
    assert capacity["intake"]["of_ceiling"] is None
    assert capacity["intake"]["meets_target"] is None
    assert capacity["intake"]["declarations_per_second"] is None
    assert bottleneck(capacity) is None
    assert stage_capacity(drains(), None, lodged=0)["intake"]["inputs_per_declaration"] == 0.0


def test_stages_report_json_and_markdown(tmp_path: Path) -> None:
    cut = StageDrain("duties", 900, 300, 150, 1.0, 5.0, 0.5, 0.1, "300 of 900 inputs")
    document = stages_report(
        MACHINE, {"count": 1000}, ceilings()[:2], [*drains(), cut], 1000, "the duties stage"
    )
    assert document["kind"] == "stages" and document["framework_ceiling"] == "faust-eos"
    assert document["bottleneck"] == {"stage": "duties", "declarations_per_second": 166.7}
    assert document["stages"][0]["cpu_ms_per_input"] == pytest.approx(3.33)
    markdown = stages_markdown(document)
    assert "Test CPU" in markdown and "No COP simulator runs" in markdown
    assert "target: 60% of the faust-eos ceiling" in markdown
    assert "| intake | 1000 | 1000 | 3.0 | 300 | 60% | 1.00 | 300 | 3.33 | 1.00 | 1.00 |" in (
        markdown
    )
    assert "| decision | 2700 | 2700 | 4.0 | 600 | 120% | 2.70 | 222 | - | - | - |" in markdown
    assert "300 of 900 inputs" in markdown and "Slowest alone: duties" in markdown
    written = write(document, markdown, "stages", tmp_path)
    assert [p.name for p in written] == ["stages.json", "stages.md"]
    assert json.loads(written[0].read_text())["capacity"]["risk"]["inputs_per_second"] == 800.0
    # The ceilings, the stages, and the notes of the stages that did not drain.
    tables = console_tables(document)
    assert len(tables) == 3 and tables[2] == "duties: 300 of 900 inputs"


def ledger_and_topics() -> tuple[Any, dict[str, str]]:
    settings = Settings(namespace="ledger")
    ledger = ledger_for(settings, SCHEMAS)
    return ledger, {logical: topic for topic, logical in ledger.topics.items()}


def test_a_declaration_is_decided_when_its_decision_is_received_not_when_it_was_sent() -> None:
    ledger, topic = ledger_and_topics()
    record = accepted("26FR00000000000AR1")
    key = f"{record['declarantEori']}/{record['lrn']}"
    ledger.lodged_ms[key], ledger.step_of[key] = 1_000, 0
    value = SCHEMAS.encode("declaration.accepted", record)
    ledger.absorb(topic["declaration.accepted"], b"26FR00000000000AR1", value, 1_200, 1_700)
    # Sent at 1,500 ms, inside a transaction committed and read at 2,400 ms.
    ledger.absorb(topic["declaration.released"], b"26FR00000000000AR1", b"", 1_500, 2_400)
    assert ledger.cohort(0) == ([1_400.0], 0)
    # The decided rate places the decision by its Kafka timestamp.
    assert ledger.in_window(1_000, 2_000) == ["released"]


def test_a_decision_read_before_its_acceptance_keeps_its_receipt_time() -> None:
    ledger, topic = ledger_and_topics()
    record = accepted("26FR00000000000BR2")
    key = f"{record['declarantEori']}/{record['lrn']}"
    ledger.lodged_ms[key], ledger.step_of[key] = 1_000, 0
    ledger.absorb(topic["declaration.released"], b"26FR00000000000BR2", b"", 1_500, 2_000)
    assert ledger.cohort(0) == ([], 1)
    value = SCHEMAS.encode("declaration.accepted", record)
    ledger.absorb(topic["declaration.accepted"], b"26FR00000000000BR2", value, 1_200, 2_600)
    assert ledger.cohort(0) == ([1_000.0], 0)


class ReadyFeed:
    """A feed whose messages have all arrived already."""

    def __init__(self, messages: list[Received]) -> None:
        self.messages = messages

    def poll(self, timeout: float) -> Received | None:
        return self.messages.pop(0) if self.messages else None


def test_a_pump_without_time_reads_everything_that_has_arrived() -> None:
    ledger, topic = ledger_and_topics()
    rejected = topic["declaration.rejected"]
    feed = ReadyFeed(
        [Received(rejected, 0, n, 1_000, f"E/{n}".encode(), b"", []) for n in range(3)]
    )
    pump(feed, ledger, 0.0)  # type: ignore[arg-type]
    assert sorted(ledger.decided) == ["E/0", "E/1", "E/2"] and not feed.messages


def test_the_steps_wait_until_the_brokers_cpu_stops_falling() -> None:
    # A freshly started broker compiling its hot paths: each round of the same load cheaper.
    assert not broker_settled([])
    assert not broker_settled([0.98])
    assert not broker_settled([0.98, 0.70])
    assert broker_settled([0.98, 0.70, 0.66])
    # Warm already: the second round costs as much as the first, or more.
    assert broker_settled([0.35, 0.38])


def test_the_report_names_the_topology_and_the_fetch_wait_when_tuned() -> None:
    base = {"partitions": 2, "commit_interval": 0.1, "idle_commit": 0}
    assert settings_text(base) == (
        "tuning default: 2 partitions per topic, commit every 0.1 s, idle commit off"
    )
    fused = {**base, "tuning": "fused", "fused": True, "fetch_min_bytes": 65536}
    assert settings_text({**fused, "fetch_max_wait": 0.02}).endswith(
        "risk and duties assessed by the decision stage, fetches wait up to 0.02 s for 65536 bytes"
    )
