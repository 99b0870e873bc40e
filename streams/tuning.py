"""Named sets of the settings that trade throughput for latency, as the environment variables a
deployment sets (docs/capacity.md, "Latency against throughput").

Every commit of a stage is one transaction per input partition it holds, and a declaration
waits for four commits in a row before its release. Short commit intervals buy latency with
more transactions; fewer partitions make each commit cheaper but cap the workers a stage can
run. `cci bench --tuning NAME` and the fault suite run under these, so that a tuning's
latency and its guarantees are measured and checked the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from streams.topics import topology

TUNINGS: Mapping[str, Mapping[str, str]] = {
    # The settings' own defaults: six partitions (room for six workers per stage), a commit
    # every 0.5 s; p99 lodging-to-release about 3 s on the test machine.
    "default": {},
    # One node, two workers per stage at most: ten commits a second of two transactions each,
    # against the default's two of six.
    "low-latency": {"CCI_PARTITIONS": "2", "CCI_COMMIT_INTERVAL": "0.1"},
    # Low-latency's settings, and one hop fewer: the decision stage assesses risk and duties
    # as it takes in an acceptance, and the risk and duty stages do not run. Each fetch waits
    # up to 20 ms for 64 KiB: fewer, fuller fetches cost the intake and the broker a fifth
    # less CPU at 600/s, for a few milliseconds more latency per hop at a light load.
    "fused": {
        "CCI_PARTITIONS": "2",
        "CCI_COMMIT_INTERVAL": "0.1",
        "CCI_FUSED_ASSESSMENT": "true",
        "CCI_FETCH_MIN_BYTES": "65536",
        "CCI_FETCH_MAX_WAIT": "0.02",
    },
}


def tuning_env(name: str) -> Mapping[str, str]:
    """The variables of tuning `name`; ValueError naming the known ones otherwise."""
    try:
        return TUNINGS[name]
    except KeyError:
        known = ", ".join(TUNINGS)
        raise ValueError(f"unknown tuning {name!r}: use one of {known}") from None


def tuning_stages(name: str) -> list[str]:
    """The stages that run under tuning `name`, in name order."""
    return sorted(topology(tuning_env(name).get("CCI_FUSED_ASSESSMENT") == "true"))


def apply_tuning(name: str, environ: MutableMapping[str, str] | None = None) -> None:
    """Set tuning `name`'s variables in `environ` (this process's environment by default),
    over any set before: the processes it starts inherit them."""
    target = os.environ if environ is None else environ
    target.update(tuning_env(name))
