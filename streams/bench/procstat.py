"""CPU seconds of processes, read from /proc (psutil is not a dependency, and this is all the
benchmark needs): the stages' workers, the COP simulator, the broker, the benchmark itself.

CPU seconds rather than a percentage sampled now and then: the difference of two readings is
exact over a step, whatever the step's length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streams.config import ROOT

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    user_ticks: int
    system_ticks: int

    @property
    def cpu_seconds(self) -> float:
        return (self.user_ticks + self.system_ticks) / TICKS


def parse_stat(text: str) -> Stat:
    """A /proc/<pid>/stat line. The command name sits in parentheses and may itself hold spaces
    and parentheses, so the fields are counted from the last `)`."""
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()
    # After the name: state, ppid, ..., utime is the 12th and stime the 13th (proc(5)).
    return Stat(
        pid=pid, ppid=int(fields[1]), user_ticks=int(fields[11]), system_ticks=int(fields[12])
    )


def stat(pid: int) -> Stat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None  # gone, or not ours to read


def cpu_seconds(pid: int) -> float | None:
    found = stat(pid)
    return None if found is None else found.cpu_seconds


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def local_broker_pid(pid_file: Path = ROOT / ".local" / "kafka" / "kafka.pid") -> int | None:
    """The pid of the local broker `deploy/local/kafka.sh` started, if it runs; None for a
    broker elsewhere (KAFKA_BOOTSTRAP), whose CPU this machine cannot see."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    args = cmdline(pid)
    return pid if any(a == "kafka.Kafka" for a in args) else None


def own_cpu_seconds() -> float:
    """This process's CPU seconds, all threads."""
    times = os.times()
    return times.user + times.system
