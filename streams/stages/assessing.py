"""What the risk and duty stages share: one accepted declaration in, one assessment out.

Both are stateless: an assessment depends only on the declaration and the reference data, and
the stage's transactions make each acceptance produce its assessment exactly once.
"""

from __future__ import annotations

from typing import Any

from streams.app import StageContext
from streams.events import assessment
from streams.fused import Assess

SOURCE = "declaration.accepted"


def build_assessing(ctx: StageContext, stage: str, emits: str, assess: Assess) -> Any:
    async def handle(message: Any) -> None:
        accepted = await ctx.decode(message, SOURCE)
        if accepted is None:
            return
        await ctx.emit(
            [assessment(emits, accepted, assess(accepted["declaration"], ctx.reference))]
        )

    @ctx.app.agent(ctx.source(SOURCE), name=f"{ctx.app.conf.id}-agent")
    async def assessing(stream: Any) -> None:
        await ctx.process(stream, handle, stage)

    return assessing
