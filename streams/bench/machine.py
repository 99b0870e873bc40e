"""Where a benchmark ran: a number means little without the machine that produced it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.config import ROOT


def cpu_model(cpuinfo: str) -> str | None:
    """The first `model name` of a /proc/cpuinfo text (x86), else its `Model`/`Hardware` line
    (ARM boards name the machine there); None when it names none."""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if value and key in ("model name", "Model", "Hardware"):
            found.setdefault(key, value)
    for key in ("model name", "Model", "Hardware"):
        if key in found:
            return found[key]
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def memory_total_bytes(meminfo: str) -> int | None:
    """`MemTotal` of a /proc/meminfo text, in bytes."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def git_commit(root: Path = ROOT) -> str | None:
    """The commit checked out, with `+dirty` when the tree has changes: a run of uncommitted
    code is not a run of that commit."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if status else head


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, OS, Python and the versions of what the numbers depend on."""
    from confluent_kafka import libversion, version

    try:
        from importlib.metadata import version as package_version

        faust_version: str | None = package_version("faust-streaming")
        fastavro_version: str | None = package_version("fastavro")
    except Exception:  # metadata missing in an odd install: the run is still worth reporting
        faust_version = fastavro_version = None
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(_read(Path("/proc/cpuinfo"))) or platform.processor() or None,
        "memory_bytes": memory_total_bytes(_read(Path("/proc/meminfo"))),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "faust_streaming": faust_version,
        "fastavro": fastavro_version,
        "confluent_kafka": version()[0],
        "librdkafka": libversion()[0],
        "git_commit": git_commit(),
        "load_average_at_start": load,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def describe(machine: dict[str, Any]) -> str:
    """One line for a report's header."""
    memory = machine.get("memory_bytes")
    gib = f", {memory / 2**30:.0f} GiB" if memory else ""
    return (
        f"{machine.get('cores')} cores, {machine.get('cpu_model') or 'unknown CPU'}{gib}; "
        f"Python {machine.get('python')}; commit {machine.get('git_commit') or 'unknown'}"
    )
