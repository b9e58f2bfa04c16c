#!/usr/bin/env bash
# The main job for now: install what is missing, build, and run a short multi-process
# workload on a tmpfs table, then print its stat. Usage: scripts/demo.sh [PROCS] [OPS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh build
ninja -C build >&2
exec build/demo "$@"
