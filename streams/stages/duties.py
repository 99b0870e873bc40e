"""Duty stage: accepted declarations in, `duties.assessed` out (spec §6)."""

from __future__ import annotations

from typing import Any

from streams.app import StageContext
from streams.duties import assess_duties
from streams.stages.assessing import build_assessing

STAGE = "duties"


def build(ctx: StageContext) -> Any:
    return build_assessing(ctx, STAGE, "duties.assessed", assess_duties)
