"""Risk stage: accepted declarations in, `risk.assessed` out (spec §5)."""

from __future__ import annotations

from typing import Any

from streams.app import StageContext
from streams.risk import assess_risk
from streams.stages.assessing import build_assessing

STAGE = "risk"


def build(ctx: StageContext) -> Any:
    return build_assessing(ctx, STAGE, "risk.assessed", assess_risk)
