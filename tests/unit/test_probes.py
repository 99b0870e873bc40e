"""The pages Kubernetes probes on a stage worker's HTTP port (deploy/k8s): `/health` answers
while the worker runs, `/ready` only once its tables are recovered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from streams.app import make_app, make_context
from streams.config import Settings


def test_health_answers_and_ready_waits_for_table_recovery(tmp_path: Path) -> None:
    settings = Settings(namespace="unit", store="memory://", state_dir=tmp_path, partitions=1)
    app = make_app("decision", settings)
    app.finalize()
    make_context("decision", settings, app)
    recovered = app.tables.recovery.completed  # type: ignore[attr-defined]

    async def get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
        response = await client.get(path)
        return response.status, await response.json()

    async def probe() -> list[tuple[int, Any]]:
        # Faust's web driver keeps its aiohttp application here; served on a loopback port.
        async with TestClient(TestServer(app.web.web_app)) as client:  # type: ignore[attr-defined]
            before = [await get(client, "/health"), await get(client, "/ready")]
            recovered.set()
            return [*before, await get(client, "/health"), await get(client, "/ready")]

    assert asyncio.run(probe()) == [
        (200, {"status": "ok"}),
        (503, {"ready": False}),
        (200, {"status": "ok"}),
        (200, {"ready": True}),
    ]
