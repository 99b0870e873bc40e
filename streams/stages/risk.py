"""Risk stage: accepted declarations in, `risk.assessed` out (spec §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.app import StageContext
from streams.reference import ReferenceData
from streams.risk import assess_risk
from streams.stages.assessing import build_assessing

STAGE = "risk"


def build(ctx: StageContext) -> Any:
    def assess(declaration: Mapping[str, Any], reference: ReferenceData) -> dict[str, Any]:
        result = assess_risk(declaration, reference)
        ctx.metrics.controls.labels(result["control"]).inc()
        return result

    return build_assessing(ctx, STAGE, "risk.assessed", assess)
