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
    # Forget what was handed out, so that `taken` is passed over for being bound, not given.
    monkeypatch.setattr(ports, "_GIVEN", set())
    candidates = iter([taken, taken + 1])
    monkeypatch.setattr(random.Random, "randrange", lambda self, a, b: next(candidates))
    try:
        assert ports.free_port() == taken + 1
    finally:
        held.close()


def test_no_port_is_handed_out_twice_by_one_process() -> None:
    # Drawn at random from about 22,000 ports, 500 draws would repeat one about five times.
    given = [ports.free_port() for _ in range(500)]
    assert len(set(given)) == len(given)
    run = ports.free_port_run(3)
    assert set(range(run, run + 3)).isdisjoint(given)
