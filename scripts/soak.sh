#!/usr/bin/env bash
# The soak run (not in CI): for every engine, N processes do random operations on one
# table while they are SIGKILLed and SIGSTOP/SIGCONTed at random; at the end every
# acknowledged write must be there, none stale, and `check` clean (tests/soak/soak.cpp).
#
#   scripts/soak.sh [SECONDS_PER_ENGINE=600] [PROCESSES=4] [ENGINES="global striped seqlock lockfree"]
#
# One JSON line per engine goes to experiments/results/soak/<UTC time>.jsonl. Exit status
# 0 only if every engine passed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
processes=${2:-4}
engines=${3:-global striped seqlock lockfree}

scripts/bootstrap.sh build
ninja -C build tests/shmht-soak >&2
out=experiments/results/soak/$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p "$(dirname "$out")"
status=0
for engine in $engines; do
  echo "== soak: $engine, $processes processes, $seconds s" >&2
  build/tests/shmht-soak --engine "$engine" --processes "$processes" --seconds "$seconds" --json "$out" || status=1
done
echo "results: $out" >&2
exit $status
