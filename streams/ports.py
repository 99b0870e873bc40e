"""Free local ports for the processes a run starts: workers' web servers, test brokers,
a test Prometheus.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from its ephemeral range, the
range it also draws the local ports of outgoing connections from. Between choosing such a port
and a worker binding it, one of the many Kafka client connections can take it (a recette worker
failed to start so, "address already in use"). Ports are therefore chosen below that range, at
random so that runs side by side rarely pick the same.

A port is handed out once per process: a port is free when chosen but taken only when the
worker binds it, so two workers started together could otherwise be given the same one (two
workers of one recette scenario were, out of some 340 ports a campaign draws).
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
# Ports this process has handed out, never again: campaigns choose ports from several threads.
_GIVEN: set[int] = set()
_GIVING = threading.Lock()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_run(count: int) -> int:
    """A base port with `count` consecutive ports from it free now, outside the ephemeral range."""
    rng = random.Random()
    top = max(_LOWEST + count, _ephemeral_start()) - count
    with _GIVING:
        for _ in range(100):
            base = rng.randrange(_LOWEST, top)
            run = range(base, base + count)
            if not _GIVEN.isdisjoint(run):
                continue
            sockets = []
            try:
                for port in run:
                    probe = socket.socket()
                    sockets.append(probe)
                    probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                for probe in sockets:
                    probe.close()
            _GIVEN.update(run)
            return base
    raise RuntimeError(f"no {count} free consecutive ports below {top + count}")


def free_port() -> int:
    return free_port_run(1)
