"""One module per stage; each exposes `build(ctx)` that registers its agents and tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.app import StageContext
from streams.stages import decision, duties, intake, risk

BUILDERS: dict[str, Callable[[StageContext], Any]] = {
    intake.STAGE: intake.build,
    risk.STAGE: risk.build,
    duties.STAGE: duties.build,
    decision.STAGE: decision.build,
}
