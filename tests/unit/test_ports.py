"""`streams.ports`: ports for the processes a run starts, outside the kernel's ephemeral range
(which outgoing Kafka connections draw from), and free when chosen."""

from __future__ import annotations

import random
import socket

import pytest

from streams import ports


def test_a_run_of_ports_is_free_and_below_the_ephemeral_range() -> None:
    base = ports.free_port_run(4)
    assert base >= ports._LOWEST and base + 4 <= ports._ephemeral_start()
    probes = [socket.socket() for _ in range(4)]
    try:
        for offset, probe in enumerate(probes):
            probe.bind(("127.0.0.1", base + offset))
    finally:
        for probe in probes:
            probe.close()


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", ports.free_port()))
    taken = held.getsockname()[1]
    candidates = iter([taken, taken + 1])
    monkeypatch.setattr(random.Random, "randrange", lambda self, a, b: next(candidates))
    try:
        assert ports.free_port() == taken + 1
    finally:
        held.close()
