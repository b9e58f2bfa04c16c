#!/usr/bin/env bash
# A/B of two shmht-driver binaries on the same cells, alternated run by run so both see
# the same (shared, noisy) machine; prints median throughput per cell and new/base.
#   cells, for every engine (1M keys of 16 B, 32 B values, 2 s each):
#     get       1 process,  get=100, uniform
#     mixed     2 processes, get=50,assign=50, Zipf 0.99
#     churn     1 process,  insert=50,erase=50, half full (allocation and free-list paths)
#
# Usage: harness/ab_driver.sh BASE_DRIVER NEW_DRIVER [ROUNDS=3] [ENGINES="global striped seqlock lockfree"]
#   AB_CELLS="get mixed" picks some of the cells (default: all three).
#   AB_NEW_ARGS / AB_BASE_ARGS: extra driver options for one side, e.g. AB_NEW_ARGS="--latency sampled"
#   when the base driver predates the latency histogram (it samples every 8th operation).
# BASE_DRIVER / NEW_DRIVER: shmht-driver binaries (build/harness/shmht-driver of two builds).
# Results: experiments/results/ab/<UTC time>-driver/ (one JSON per run, summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(realpath "$1") new=$(realpath "$2") rounds=${3:-3}
engines=${4:-global striped seqlock lockfree}
out=experiments/results/ab/$(date -u +%Y%m%dT%H%M%SZ)-driver
mkdir -p "$out"
{ echo "base: $base"; echo "new:  $new"; echo "commit: $(git rev-parse --short HEAD)"; uptime; } > "$out/builds.txt"
declare -A cells=(
  [get]="--processes 1 --mix get=100 --distribution uniform"
  [mixed]="--processes 2 --mix get=50,assign=50 --distribution zipf --zipf-theta 0.99"
  [churn]="--processes 1 --mix insert=50,erase=50 --distribution uniform --prefill 0.5"
)
for round in $(seq "$rounds"); do
  for engine in $engines; do
    for cell in ${AB_CELLS:-get mixed churn}; do
      for side in base new; do
        driver=$base extra=${AB_BASE_ARGS:-}
        [[ $side == new ]] && driver=$new extra=${AB_NEW_ARGS:-}
        # shellcheck disable=SC2086
        "$driver" --store "$engine" --keys 1000000 --key-bytes 16 --value-bytes 32 --duration 2 \
          ${cells[$cell]} $extra > "$out/$engine-$cell-$side-$round.json" || true
      done
    done
  done
  echo "ab_driver: round $round/$rounds done" >&2
done
/usr/bin/python3 harness/ab_driver_summary.py "$out" | tee "$out/summary.txt"
