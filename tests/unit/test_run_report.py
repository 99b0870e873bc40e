"""`cci report` without a broker: buckets, joins, percentiles, the reading of a namespace (with a
stand-in for Kafka), the PNG, and the command's one-line errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams import run_report as rr
from streams.cli import main
from streams.codec import DecodeError
from streams.config import Settings
from streams.kafka_io import Received

T0 = 1_775_030_400_000  # epoch ms


# --- throughput ----------------------------------------------------------------------------------


def test_throughput_counts_events_per_bucket_from_the_first_one() -> None:
    xs, rates = rr.throughput([T0, T0 + 100, T0 + 999, T0 + 1000, T0 + 3500], 1.0)
    assert xs == [0.0, 1.0, 2.0, 3.0]
    assert rates == [3.0, 1.0, 0.0, 1.0]  # the empty bucket is there, at zero


def test_throughput_is_a_rate_per_second_whatever_the_bucket() -> None:
    xs, rates = rr.throughput([T0, T0 + 100, T0 + 600], 0.5)
    assert (xs, rates) == ([0.0, 0.5], [4.0, 2.0])
    xs, rates = rr.throughput([T0 + i * 100 for i in range(20)], 2.0)
    assert (xs, rates) == ([0.0], [10.0])


def test_throughput_series_share_an_origin_and_an_end() -> None:
    xs, rates = rr.throughput([T0 + 2500], 1.0, origin_ms=T0, end_ms=T0 + 4200)
    assert xs == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert rates == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_throughput_of_nothing_is_empty_and_a_bucket_must_be_positive() -> None:
    assert rr.throughput([], 1.0) == ([], [])
    with pytest.raises(ValueError, match="positive"):
        rr.throughput([T0], 0)


# --- latencies -----------------------------------------------------------------------------------


def test_latencies_join_lodging_and_decision_by_key_in_decision_order() -> None:
    lodged = {"FR1/A": T0, "FR1/B": T0 + 100, "FR1/C": T0 + 200}
    decided = {"FR1/B": T0 + 900, "FR1/A": T0 + 1500, "FR9/X": T0 + 50}  # X was never lodged
    assert rr.latencies(lodged, decided) == [(T0 + 900, 0.8), (T0 + 1500, 1.5)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [rr.percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert rr.percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        rr.percentile([], 50)


# --- rolling percentiles -------------------------------------------------------------------------


def test_rolling_percentiles_over_a_centred_window() -> None:
    points = [(T0 + i * 100, float(i)) for i in range(11)]  # one per 100 ms, 0..10 s
    series = rr.rolling_percentiles(points, window_s=0.2, percents=(50, 100), step_s=0.5)
    assert series.xs == [0.0, 0.5, 1.0]
    # At 0.5 s the window holds 0.4, 0.5 and 0.6 s: the values 4, 5 and 6.
    assert series.values[50] == [0.0, 5.0, 9.0]
    assert series.values[100] == [1.0, 6.0, 10.0]


def test_rolling_percentiles_leave_a_gap_where_nothing_was_decided_and_reach_the_last_point() -> (
    None
):
    points = [(T0, 1.0), (T0 + 100, 2.0), (T0 + 10_250, 7.0)]
    series = rr.rolling_percentiles(points, window_s=1.0, step_s=1.0, origin_ms=T0 - 1000)
    assert series.xs[0] == 1.0 and series.xs[-1] == 11.25  # seconds since the origin
    assert series.values[50][0] == 1.0 and series.values[99][0] == 2.0
    assert all(math.isnan(v) for v in series.values[50][2:10])
    assert series.values[50][-1] == 7.0


def test_rolling_percentiles_of_nothing() -> None:
    series = rr.rolling_percentiles([], 5.0)
    assert series.xs == [] and series.values == {50: [], 95: [], 99: []}
    with pytest.raises(ValueError, match="positive"):
        rr.rolling_percentiles([(T0, 1.0)], 0)


def test_default_window_follows_the_length_of_the_run() -> None:
    assert rr.default_window(8.0, 1.0) == 2.0
    assert rr.default_window(600.0, 1.0) == 30.0


# --- reading a namespace -------------------------------------------------------------------------


class _Schemas:
    """A stand-in catalogue: a message's value is the JSON of `[logical, record]`."""

    def decode_any(self, data: bytes) -> tuple[str, dict[str, Any]]:
        try:
            logical, record = json.loads(data)
        except ValueError:
            raise DecodeError("not-single-object-encoding", "garbage") from None
        return str(logical), dict(record)


def _message(topic: str, at: int, logical: str, record: dict[str, Any]) -> Received:
    value = json.dumps([logical, record]).encode()
    return Received(f"ns.{topic}", 0, 0, at, None, value, [])


def _lodged(eori: str, lrn: str, at: int) -> Received:
    record = {"lrn": lrn, "declarant": {"eori": eori, "name": "x"}}
    return _message("declarations.lodged", at, "declaration.lodged", record)


def _accepted(eori: str, lrn: str, mrn: str, at: int) -> Received:
    record = {"mrn": mrn, "lrn": lrn, "declarantEori": eori}
    return _message("declarations.accepted", at, "declaration.accepted", record)


MESSAGES = [
    _lodged("FR1", "A", T0),
    _lodged("FR1", "B", T0 + 200),
    _lodged("FR1", "A", T0 + 300),  # a resubmission: the first lodging counts
    Received("ns.declarations.lodged", 1, 7, T0 + 400, None, b"\x00garbage", []),
    _lodged("FR1", "C", T0 + 500),
    _message("declarations.rejected", T0 + 600, "declaration.rejected", {"lrn": "C"}),
    # The decision of A is read before its acceptance: the join waits for every acceptance.
    _message("declarations.released", T0 + 2000, "declaration.released", {"mrn": "M-A"}),
    _accepted("FR1", "A", "M-A", T0 + 700),
    _accepted("FR1", "B", "M-B", T0 + 800),
    _message("declarations.invalidated", T0 + 2600, "declaration.invalidated", {"mrn": "M-B"}),
    _message("declarations.not-released", T0 + 2700, "declaration.not-released", {"mrn": "M-Z"}),
    # A clock tick goes to every partition: one tick, however many copies.
    _message("clock.ticks", T0 + 3000, "clock.tick", {"eventId": "t1"}),
    _message("clock.ticks", T0 + 3001, "clock.tick", {"eventId": "t1"}),
    # A message of another event on a topic is as useless as garbage.
    _message("declarations.accepted", T0 + 3100, "risk.assessed", {"mrn": "M-A"}),
]


def test_collect_joins_a_namespace_by_declaration_and_skips_the_undecodable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_topics: list[str] = []

    def fake_read(settings: Settings, topics: list[str], **_: Any) -> Iterator[Received]:
        read_topics.extend(topics)
        yield from MESSAGES

    monkeypatch.setattr("streams.kafka_io.read", fake_read)
    monkeypatch.setattr("streams.codec.catalogue", lambda directory: _Schemas())
    data = rr.collect(Settings(namespace="ns"))
    assert sorted(read_topics) == sorted(
        f"ns.{t}"
        for t in (
            "declarations.lodged",
            "declarations.accepted",
            "declarations.rejected",
            "declarations.released",
            "declarations.not-released",
            "declarations.invalidated",
            "clock.ticks",
        )
    )
    assert data.lodged == {"FR1/A": T0, "FR1/B": T0 + 200, "FR1/C": T0 + 500}
    assert data.lodged_ts == [T0, T0 + 200, T0 + 300, T0 + 500]
    assert (data.accepted_ts, data.rejected_ts) == ([T0 + 700, T0 + 800], [T0 + 600])
    assert data.decided == {"FR1/A": T0 + 2000, "FR1/B": T0 + 2600}
    assert data.decided_ts == [T0 + 2000, T0 + 2600, T0 + 2700]
    assert dict(data.outcomes) == {
        "declaration.released": 1,
        "declaration.invalidated": 1,
        "declaration.not-released": 1,
    }
    assert (data.ticks, data.undecodable, data.unattributed) == ([T0 + 3000], 2, 1)
    assert rr.latencies(data.lodged, data.decided) == [(T0 + 2000, 2.0), (T0 + 2600, 2.4)]


def test_collect_of_a_namespace_without_topics_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(settings: Settings, topics: list[str], **_: Any) -> Iterator[Received]:
        raise LookupError("topic ns.declarations.lodged does not exist; run `cci topics create`")
        yield  # a generator, as kafka_io.read is

    monkeypatch.setattr("streams.kafka_io.read", missing)
    with pytest.raises(rr.ReportError) as caught:
        rr.collect(Settings(namespace="ns"))
    assert str(caught.value) == (
        "no declarations lodged in namespace ns: topic ns.declarations.lodged does not exist"
    )


# --- the picture ---------------------------------------------------------------------------------


def synthetic_run(declarations: int = 400) -> rr.RunData:
    """A run of `declarations` lodged over ~8 s, nine in ten accepted and decided ~1-3 s later,
    a few decided after a clock tick."""
    data = rr.RunData()
    for i in range(declarations):
        key = f"FR1/L{i}"
        lodged = T0 + i * 20
        data.lodged[key] = lodged
        data.lodged_ts.append(lodged)
        if i % 10 == 9:
            data.rejected_ts.append(lodged + 150)
            continue
        data.accepted_ts.append(lodged + 120 + (i % 7) * 10)
        late = i % 50 == 0
        decided = lodged + (12_000 if late else 900 + (i * 37) % 2000)
        data.decided[key] = decided
        data.decided_ts.append(decided)
        outcome = rr.TERMINAL[2] if i % 40 == 1 else rr.TERMINAL[1 if late else 0]
        data.outcomes[outcome] += 1
    data.ticks = [T0 + 11_000]
    data.undecodable = 10
    return data


def test_render_writes_a_png_and_the_same_one_for_the_same_data(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    rr.render(synthetic_run(), first, "CCI run, namespace test", cpu="2 × Test CPU")
    rr.render(synthetic_run(), second, "CCI run, namespace test", cpu="2 × Test CPU")
    image = first.read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(image) > 10_000
    assert image == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_render_draws_a_run_without_decisions_and_refuses_one_without_lodgings(
    tmp_path: Path,
) -> None:
    undecided = rr.RunData(lodged={"FR1/A": T0}, lodged_ts=[T0], rejected_ts=[T0 + 100])
    rr.render(undecided, tmp_path / "u.png", "t", bucket_s=0.5, window_s=1.0, cpu="1 × CPU")
    assert (tmp_path / "u.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(rr.ReportError):
        rr.render(rr.RunData(), tmp_path / "none.png", "t", cpu="1 × CPU")
    assert not (tmp_path / "none.png").exists()


def test_caption_gives_totals_percentiles_and_the_machine() -> None:
    data = synthetic_run(100)
    lags = [lag for _, lag in rr.latencies(data.lodged, data.decided)]
    text = rr.caption(data, lags, "2 × Test CPU")
    assert text.count("\n") == 1
    assert "lodged 100 (+10 undecodable, skipped)" in text
    assert "accepted 90" in text and "rejected 10" in text
    assert "decided 90 (released 85, not released 2, invalidated 3)" in text
    p50, p95, p99 = (rr.percentile(lags, p) for p in (50, 95, 99))
    assert f"p50 / p95 / p99 {p50:.2f} s / {p95:.2f} s / {p99:.2f} s over 90 decisions" in text
    assert text.endswith("machine: 2 × Test CPU")


def test_machine_reads_the_cpu_model(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) Gold 6230\n")
    assert rr.machine(cpuinfo).endswith(" × Intel(R) Xeon(R) Gold 6230")
    assert " × " in rr.machine(tmp_path / "absent")


# --- the command ---------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("report.txt", "the report is a PNG image, name it *.png"),
        ("missing/report.png", "cannot be written (no directory"),
        ("folder.png", "cannot be written (is a directory)"),
    ],
)
def test_report_refuses_a_bad_path_before_reading_anything(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    message: str,
) -> None:
    (tmp_path / "folder.png").mkdir()
    # No broker answers on port 1: the path is refused before any attempt to reach one.
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:1")
    code, out, err = run(capsys, "report", str(tmp_path / name), "--namespace", "ns")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err


def test_report_refuses_a_bad_bucket(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "report", str(tmp_path / "r.png"), "--bucket", "fast")
    assert code == 2 and err.count("\n") == 1 and "--bucket 'fast'" in err
