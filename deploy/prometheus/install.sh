#!/usr/bin/env bash
# Ensure Prometheus and promtool from Debian's packages (the `prometheus` package ships both).
# The package's service is not started: `make run` and the tests start Prometheus themselves.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "prometheus: missing, and no apt-get here; install Prometheus 2.x yourself" >&2; exit 1; }
sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || { echo "prometheus: missing; not root and no sudo" >&2; exit 1; }
    sudo=(sudo)
fi
echo "prometheus: installing Prometheus and promtool with apt-get" >&2
# The package installs without an update when the machine's package lists are recent enough.
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi
command -v promtool >/dev/null 2>&1
