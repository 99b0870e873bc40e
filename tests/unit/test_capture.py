"""Capture files and the arguments of `cci capture` / `cci replay`, without a broker."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

import streams.cli
import streams.cli_tools
from streams.capture import (
    CaptureError,
    CaptureHeader,
    captured,
    logical_names,
    open_writer,
    parse_instant,
    plan,
    read_capture,
    retention_problems,
)
from streams.cli import main

streams.cli_tools.register(streams.cli.app)

HEADER = CaptureHeader(
    "ns-a",
    "2026-04-01T08:00:00+00:00",
    "2026-04-01T09:00:00+00:00",
    {"declaration.lodged": 3, "cop.risk-result": 3},
)
RECORDS = [
    captured("declaration.lodged", 2, 10, 1_775_030_400_000, b"FR1/L1", [], b"\xc3\x01body"),
    captured(
        "declaration.lodged",
        2,
        11,
        1_775_030_400_001,
        b"FR1/L2",
        [("trace", b"abc"), ("empty", None)],
        None,
    ),
    captured("cop.risk-result", 0, 0, 1_775_030_401_000, None, [], b"\x00\xff"),
]


def write(records: list[dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    writer = open_writer(buffer, HEADER)
    for record in records:
        writer.write(record)
    writer.flush()
    return buffer.getvalue()


def test_a_capture_file_gives_back_its_header_and_records_byte_for_byte() -> None:
    header, records = read_capture(io.BytesIO(write(RECORDS)))
    assert header == HEADER
    assert list(records) == RECORDS


def test_the_replay_plan_counts_records_per_partition_and_finds_the_oldest() -> None:
    found = plan(io.BytesIO(write(RECORDS)))
    assert found.counts == {("declaration.lodged", 2): 2, ("cop.risk-result", 0): 1}
    assert (found.total, found.oldest) == (3, 1_775_030_400_000)
    assert found.needed_partitions("declaration.lodged") == 3
    assert found.logicals() == ["declaration.lodged", "cop.risk-result"]
    only = plan(io.BytesIO(write(RECORDS)), ["cop.risk-result"])
    assert only.counts == {("cop.risk-result", 0): 1}


def test_a_file_that_is_not_a_capture_is_refused() -> None:
    with pytest.raises(CaptureError, match="not an Avro object container file"):
        read_capture(io.BytesIO(b"hello"))
    from fastavro import writer

    other = io.BytesIO()
    writer(other, {"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]}, [])
    with pytest.raises(CaptureError, match="not a cci capture file"):
        read_capture(io.BytesIO(other.getvalue()))


def test_instants_need_an_offset_and_are_read_as_utc() -> None:
    assert parse_instant("2026-04-01T10:00:00+02:00", "--from") == datetime(
        2026, 4, 1, 8, tzinfo=UTC
    )
    assert parse_instant("2026-04-01T08:00:00Z", "--from").tzinfo == UTC
    with pytest.raises(CaptureError, match="add a UTC offset"):
        parse_instant("2026-04-01T08:00:00", "--from")
    with pytest.raises(CaptureError, match="not an ISO-8601 instant"):
        parse_instant("yesterday", "--to")


def test_topics_are_logical_names_in_spec_order() -> None:
    assert logical_names("risk.assessed, declaration.lodged") == [
        "declaration.lodged",
        "risk.assessed",
    ]
    assert len(logical_names(None)) == 16
    with pytest.raises(CaptureError, match=r"unknown event 'declarations\.lodged'"):
        logical_names("declarations.lodged")


def test_retention_refuses_only_what_the_broker_would_delete() -> None:
    day = 86_400_000
    now = 100 * day
    retention = {"a": 7 * day, "b": -1, "c": 365 * day}
    assert [p.split()[0] for p in retention_problems(retention, now - 30 * day, now)] == ["a"]
    assert retention_problems(retention, now - day, now) == []


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-04-01T08:00", "--to", "2026-04-01T09:00Z"], "add a UTC offset"),
        (["--from", "2026-04-01T09:00Z", "--to", "2026-04-01T09:00Z"], "must be after --from"),
        (
            ["--from", "2026-04-01T08:00Z", "--to", "2026-04-01T09:00Z", "--topics", "nope"],
            "unknown event 'nope'",
        ),
        (["--from", "08:00", "--to", "2026-04-01T09:00Z"], "not an ISO-8601 instant"),
    ],
)
def test_capture_arguments_fail_with_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    out_file = tmp_path / "out.avro"
    code, out, err = run(capsys, "capture", *args, str(out_file))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err
    assert not out_file.exists()


def test_capture_to_an_unwritable_file_fails_before_reading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "out.avro"
    code, _, err = run(
        capsys, "capture", "--from", "2026-04-01T08:00Z", "--to", "2026-04-01T09:00Z", str(target)
    )
    assert code == 2 and err.count("\n") == 1 and "cannot be written" in err


def test_replay_refuses_a_file_that_is_not_a_capture(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.avro"
    bogus.write_bytes(b"not avro")
    code, _, err = run(capsys, "replay", str(bogus), "--into-namespace", "x")
    assert code == 2 and err.count("\n") == 1 and "not an Avro object container file" in err
    code, _, err = run(capsys, "replay", str(tmp_path / "none.avro"), "--into-namespace", "x")
    assert code == 2 and err.count("\n") == 1 and "cannot be read" in err
    code, _, err = run(capsys, "replay", str(bogus), "--into-namespace", "bad ns")
    assert code == 2 and err.count("\n") == 1 and "namespace" in err


def test_replay_needs_a_target_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay", "file.avro")
    assert code == 2 and err.count("\n") == 1 and "--into-namespace" in err
