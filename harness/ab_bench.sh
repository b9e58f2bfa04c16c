#!/usr/bin/env bash
# A/B: one build against another on the lookup benchmarks of issue 13, alternated round
# by round so that both see the same (shared, noisy) machine; medians side by side.
#   table_bench get_hit / get_miss (every engine and the private baselines), 3 repetitions
#   harness/python_bench.py --no-seed for global and seqlock (t[k], k in t, inserts)
#   harness/python_get_many.py (a t[k] loop against get_many over batches of 256)
#   batch_bench get_into / get_many_into / contains / contains_many (every engine), 3 repetitions
#
# Usage: harness/ab_bench.sh BASE_BUILD NEW_BUILD [ROUNDS]     (default 2 rounds)
#   AB_PARTS="table python get_many batch" (the default) picks which of the four to run.
# BASE_BUILD and NEW_BUILD are build directories (bench/table_bench, python/). A build of
# an older commit:  git worktree add /tmp/shmht-base COMMIT &&
#                   (cd /tmp/shmht-base && scripts/bootstrap.sh build && ninja -C build)
# Results: experiments/results/ab/<UTC time>/, with summary.txt (what this prints).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(realpath "$1") new=$(realpath "$2") rounds=${3:-2}
parts=" ${AB_PARTS:-table python get_many batch} "
wants() { [[ $parts == *" $1 "* ]]; }
out=experiments/results/ab/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
{ echo "base: $base"; echo "new:  $new"; echo "commit: $(git rev-parse --short HEAD)"; uptime; } > "$out/builds.txt"
for round in $(seq "$rounds"); do
  for side in base new; do
    dir=$base
    [[ $side == new ]] && dir=$new
    echo "== round $round/$rounds: $side ($dir)" >&2
    if wants table; then
      "$dir/bench/table_bench" --benchmark_filter='get_(hit|miss)/' --benchmark_repetitions=3 \
        --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
        --benchmark_out="$out/table_bench-$side-$round.json" --benchmark_out_format=json >/dev/null
    fi
    if wants python; then
      PYTHONPATH="$dir/python" /usr/bin/python3 harness/python_bench.py --reps 3 --no-seed --engines global seqlock \
        --json "$out/python-$side-$round.json" >/dev/null
    fi
    if wants get_many; then
      PYTHONPATH="$dir/python" /usr/bin/python3 harness/python_get_many.py --reps 3 \
        --json "$out/get-many-$side-$round.json" >/dev/null
    fi
    if wants batch; then
      "$dir/bench/batch_bench" --benchmark_filter='^(get_into|get_many_into|contains|contains_many)/' \
        --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
        --benchmark_out="$out/batch_bench-$side-$round.json" --benchmark_out_format=json >/dev/null
    fi
  done
done
/usr/bin/python3 harness/ab_summary.py "$out" | tee "$out/summary.txt"
