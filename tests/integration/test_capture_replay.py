"""`cci capture`, `cci replay` and `cci diff` on the real broker.

A namespace A is fed 100 generated declarations (10 % with defects) and a COP answer NONE for
every acceptance. Its lodgings and COP answers are captured over the time range of the run, then
replayed, lodgings first and COP answers once the stages have forwarded, into a fresh namespace
B with the same stages: `cci diff A B` finds nothing. The same file replayed into C, whose
stages read reference data where RP-TOY-SAFETY asks for a PHYSICAL instead of a DOCUMENTARY
control, differs exactly in the control of the declarations that profile matches.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import streams.cli
import streams.cli_tools
from streams.admin import delete_namespace, ensure_topics
from streams.codec import SchemaCatalogue
from streams.config import ROOT, Settings
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import publish_records
from streams.reference import load_reference
from streams.topics import declaration_key
from tests.integration.conftest import WorkerProcess
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

COUNT = 100
SEED = 2  # three of its valid declarations are toys from CN (RP-TOY-SAFETY)
PROFILE = "RP-TOY-SAFETY"


@contextmanager
def namespaces(bootstrap: str) -> Iterator[list[Settings]]:
    """Fresh namespaces, deleted at the end, whatever happened."""
    created: list[Settings] = []
    try:
        yield created
    finally:
        for settings in created:
            delete_namespace(settings)


def pipeline_in(
    created: list[Settings],
    bootstrap: str,
    schemas: SchemaCatalogue,
    directory: Path,
    reference_dir: Path | None = None,
) -> Pipeline:
    directory.mkdir(parents=True)
    settings = Settings(
        bootstrap=bootstrap,
        namespace=f"it-{uuid.uuid4().hex[:10]}",
        partitions=3,
        state_dir=directory / "state",
    )
    created.append(settings)
    ensure_topics(settings)
    pipeline = Pipeline(settings, schemas, directory)
    if reference_dir is not None:
        env = {"CCI_REFERENCE_DIR": str(reference_dir)}
        pipeline.workers = {
            stage: WorkerProcess(settings, stage, directory, env=env) for stage in pipeline.workers
        }
    return pipeline.start()


def wait_for(pipeline: Pipeline, what: str, condition: object, timeout: float = 60.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{pipeline.settings.namespace}: no {what} within {timeout}s")
        time.sleep(0.5)


def settle_intake(pipeline: Pipeline, count: int) -> list[str]:
    """Wait until every lodging has its outcome and every acceptance its forward; the MRNs."""
    wait_for(
        pipeline,
        "outcome for every lodging",
        lambda: (
            len(pipeline.events("declaration.accepted"))
            + len(pipeline.events("declaration.rejected"))
            >= count
        ),
    )
    mrns = [str(r["mrn"]) for r in pipeline.events("declaration.accepted")]
    wait_for(
        pipeline,
        "forward per acceptance",
        lambda: len(pipeline.events("cop.forwarded")) >= len(mrns),
    )
    return mrns


def settle_decisions(pipeline: Pipeline, released: int, controlled: int) -> None:
    wait_for(
        pipeline,
        f"{released} releases and {controlled} IE460",
        lambda: (
            len(pipeline.events("declaration.released")) >= released
            and len(pipeline.events("trader.notification", messageCode="IE460")) >= controlled
        ),
    )
    pipeline.settle()


def cci(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    streams.cli_tools.register(streams.cli.app)
    capsys.readouterr()
    code = streams.cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def physical_toys(directory: Path) -> Path:
    """The default reference data, with RP-TOY-SAFETY asking for a physical control."""
    target = directory / "reference"
    shutil.copytree(ROOT / "reference", target)
    profiles = target / "risk-profiles.yaml"
    text = profiles.read_text()
    before = 'commodityPrefixes: ["9503"]\n    control: DOCUMENTARY'
    assert text.count(before) == 1
    profiles.write_text(text.replace(before, 'commodityPrefixes: ["9503"]\n    control: PHYSICAL'))
    assert load_reference(target).risk_profiles != load_reference(ROOT / "reference").risk_profiles
    return target


def replay_into(
    capsys: pytest.CaptureFixture[str], pipeline: Pipeline, capture: Path, count: int
) -> None:
    """Lodgings first; the COP answers once the stages have forwarded, as the COP would."""
    namespace = pipeline.settings.namespace
    code, _, err = cci(capsys, "replay", str(capture), "--into-namespace", namespace,
                       "--topics", "declaration.lodged")  # fmt: skip
    assert code == 0, err
    settle_intake(pipeline, count)
    code, _, err = cci(capsys, "replay", str(capture), "--into-namespace", namespace,
                       "--topics", "cop.risk-result")  # fmt: skip
    assert code == 0, err


def test_capture_replay_diff(
    bootstrap: str, schemas: SchemaCatalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "a.avro"
    with namespaces(bootstrap) as created, ExitStack() as running:
        a = pipeline_in(created, bootstrap, schemas, tmp_path / "a")
        running.callback(a.stop)
        first = datetime.now(UTC) - timedelta(seconds=1)
        reference = load_reference()
        schema = schemas.latest("declaration.lodged").schema
        lodgings = [from_json(schema, d) for d in generate(COUNT, 0.1, SEED, reference, "FR")]
        publish_records(a.settings, schemas, "declaration.lodged", lodgings)
        mrns = settle_intake(a, COUNT)
        for accepted in a.events("declaration.accepted"):
            a.send("cop.risk-result", mrn=accepted["mrn"], control="NONE",
                   occurredAt=accepted["occurredAt"])  # fmt: skip
        none_type_a = {
            str(r["mrn"])
            for r in a.events("cop.forwarded", instruction="RELEASE_ALLOWED")
            if r["declaration"]["additionalDeclarationType"] == "A"
        }
        controlled = len(a.events("cop.forwarded", instruction="CONTROL_REQUIRED"))
        settle_decisions(a, len(none_type_a), controlled)
        last = datetime.now(UTC) + timedelta(seconds=1)
        time.sleep(1.0)
        toys = {
            str(r["mrn"])
            for r in a.events("risk.assessed", control="DOCUMENTARY")
            if PROFILE in r["matchedProfiles"]
        }
        assert toys, "the seed no longer lodges toys from CN"
        declaration_of = {str(r["mrn"]): declaration_key(r["declarantEori"], r["lrn"])
                          for r in a.events("declaration.accepted")}  # fmt: skip
        a.stop()

        code, _, err = cci(capsys, "capture", "-n", a.settings.namespace, "--from",
                           first.isoformat(), "--to", last.isoformat(), "--topics",
                           "declaration.lodged,cop.risk-result", str(capture))  # fmt: skip
        assert code == 0, err
        assert "declaration.lodged │ 100" in err and f"cop.risk-result    │ {len(mrns)}" in err

        b = pipeline_in(created, bootstrap, schemas, tmp_path / "b")
        running.callback(b.stop)
        replay_into(capsys, b, capture, COUNT)
        settle_decisions(b, len(none_type_a), controlled)
        b.stop()
        assert not b.events("dead-letter")
        code, out, err = cci(capsys, "diff", a.settings.namespace, b.settings.namespace)
        assert (code, out) == (0, ""), err

        c = pipeline_in(created, bootstrap, schemas, tmp_path / "c", physical_toys(tmp_path))
        running.callback(c.stop)
        replay_into(capsys, c, capture, COUNT)
        settle_decisions(c, len(none_type_a), controlled)
        c.stop()
        code, out, err = cci(capsys, "diff", "--json", a.settings.namespace, c.settings.namespace)
        assert code == 1, err
        differences = [json.loads(line) for line in out.splitlines()]
        assert sorted((d["declaration"], d["aspect"]) for d in differences) == sorted(
            (declaration_of[mrn], "control") for mrn in toys
        )
        assert all(d["a"].startswith("DOCUMENTARY") for d in differences)
        assert all(d["b"].startswith("PHYSICAL") for d in differences)
