"""Run stages: one Faust worker process per stage, each its own consumer group."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import faust

from streams.app import make_app, make_context
from streams.config import Settings
from streams.stages import BUILDERS

log = logging.getLogger(__name__)


def stage_port(settings: Settings, stage: str) -> int:
    """The HTTP port of `stage` when `cci worker --stage all` runs every stage from one base."""
    return settings.web_port + sorted(BUILDERS).index(stage)


def build_stage(stage: str, settings: Settings) -> faust.App:
    app = make_app(stage, settings)
    BUILDERS[stage](make_context(stage, settings, app))
    return app


CLEAN_SHUTDOWN = "clean-shutdown"


def prepare_state_dir(path: Path) -> None:
    """Keep local table state only if the last worker closed it cleanly.

    Local stores take writes before their transaction commits; after a crash they may hold
    state of inputs that will be processed again. Rebuilt from the changelogs, which are read
    committed-only, the state is exactly what the committed outputs imply."""
    marker = path / CLEAN_SHUTDOWN
    if marker.exists():
        marker.unlink()
    elif path.exists() and any(path.iterdir()):
        log.warning("%s was not closed cleanly: rebuilding it from the changelogs", path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def run_stage(stage: str, settings: Settings, loglevel: str = "info") -> None:
    """Run one stage in this process until it is stopped (SIGTERM or SIGINT)."""
    state = settings.state_dir / settings.namespace / stage
    logging.basicConfig(level=loglevel.upper())
    prepare_state_dir(state)
    app = build_stage(stage, settings)
    settle_garbage_collector()
    worker = faust.Worker(app, loglevel=loglevel)
    code: object = 1
    try:
        worker.execute_from_commandline()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        if code in (0, None):
            (state / CLEAN_SHUTDOWN).touch()


# Objects the collector's youngest generation may gain before it runs; Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Leave the objects built so far (reference data, schemas, the app) out of every later
    collection, and collect less often.

    A loaded stage makes and drops thousands of objects per second, nearly all freed by their
    reference counts; at Python's default threshold the decision stage ran 24 young
    collections a second, and every five seconds a full one of 66 ms over the reference data,
    about 2 % of its time and a pause of each input in flight (docs/capacity.md, Eighth
    round)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run_all(stages: Sequence[str], loglevel: str, namespace: str) -> int:
    """Run each stage as its own process, as in production; stop them all on a signal."""
    base = Settings()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--stage",
                s,
                "--loglevel",
                loglevel,
                "--namespace",
                namespace,
            ],
            env={**os.environ, "CCI_WEB_PORT": str(stage_port(base, s))},
        )
        for s in stages
    ]

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(c.poll() is None for c in children):
        time.sleep(0.5)
    stop(signal.SIGTERM, None)
    deadline = time.monotonic() + 30
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
    return max((c.returncode or 0) for c in children)
