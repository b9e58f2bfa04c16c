#!/usr/bin/env bash
# Issue 20's benchmarks, in one run on one machine (ratios measured side by side):
#   load     1M keys from capacity 1,000 against presized, every engine (target >= 0.7)
#   latency  get p50/p99/p99.9 during migrations against steady state (target p99.9 <= 2x
#            for seqlock and lockfree), every engine
#   seed     pyshmht's 333,333 items with default options: resident bytes per item (<= 50)
#   ab       a table that never grows: shmht-driver cells of BASE_DRIVER (a build before
#            growth) against this build's, alternated (target: within 3 %)
# Usage: harness/growth_bench.sh [BASE_DRIVER] [ROUNDS=5]
# Results: experiments/results/growth/<UTC time>/ (growth_bench.jsonl, the A/B's summary).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-} rounds=${2:-5}
out=experiments/results/growth/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
{ echo "commit: $(git rev-parse --short HEAD)"; uname -a; nproc; uptime; } > "$out/machine.txt"
bench=build/bench/growth_bench
"$bench" seed | tee -a "$out/growth_bench.txt"
"$bench" load "$rounds" 1000000 | tee -a "$out/growth_bench.txt"
"$bench" latency 3000000 | tee -a "$out/growth_bench.txt"
grep '^{' "$out/growth_bench.txt" > "$out/growth_bench.jsonl"
if [[ -n $base ]]; then
  AB_CELLS="get mixed" harness/ab_driver.sh "$base" build/harness/shmht-driver "$rounds" | tee "$out/ab_summary.txt"
fi
echo "growth_bench: results in $out" >&2
