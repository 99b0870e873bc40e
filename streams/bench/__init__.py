"""Benchmarks of the pipeline (issue 7): how fast it runs on this machine, never asserted in tests.

- `micro`: the pure functions (validation, MRN allocation, risk, duties) and Avro encode/decode
  per message, one process, so the rates are per core (`make bench-micro`, no broker).
- `ceilings`: what one hop can do on the same messages, with the plain client and with Faust.
- `steps`: the real stages and the COP simulator under generated load offered at increasing
  rates until saturation.
- `report`: the JSON, Markdown and PNG under `bench/results/`, with `machine` saying where it ran.
- `procstat`: CPU seconds of processes from /proc, the broker's included.
"""
