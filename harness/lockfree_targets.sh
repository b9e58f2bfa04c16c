#!/usr/bin/env bash
# Issue 22's cells: the lock-free engine against the seqlock, side by side in one run
# (runs alternate engine by engine, the order flipping each round; medians reported):
#   get1     1 process,   get=100, uniform
#   mixed2   2 processes, get=50,assign=50, Zipf 0.99
#   mixed8   8 processes, same mix (oversubscribed on a 2-core machine)
#   insert   1 process, 1M new keys into a table created for them (bench/growth_bench insert)
# 1M keys of 16 B with 32 B values, 1 s per driver run. The driver times every 8th
# operation (--latency sampled), as throughput runs did before the tail histogram.
#
# Usage: harness/lockfree_targets.sh [ROUNDS=5] [BUILD=build]
# Results: experiments/results/lockfree-targets/<UTC time>/ (one JSON per run, summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} build=${2:-build}
driver=$build/harness/shmht-driver bench=$build/bench/growth_bench
timing=--latency=sampled  # a driver built before the histogram samples anyway, and has no such flag
"$driver" --help | grep -q -- --latency || timing=
out=experiments/results/lockfree-targets/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
src=$(cd "$build/.." && pwd)  # the checkout the build was made from
{ echo "build: $build, from $src at commit $(git -C "$src" rev-parse --short HEAD)$(git -C "$src" diff --quiet HEAD -- src include || echo ' (modified)')"
  uptime; nproc; } > "$out/run.txt"
declare -A cells=(
  [get1]="--processes 1 --mix get=100 --distribution uniform"
  [mixed2]="--processes 2 --mix get=50,assign=50 --distribution zipf --zipf-theta 0.99"
  [mixed8]="--processes 8 --mix get=50,assign=50 --distribution zipf --zipf-theta 0.99"
)
for round in $(seq "$rounds"); do
  order="seqlock lockfree"
  (( round % 2 == 0 )) && order="lockfree seqlock"
  for cell in get1 mixed2 mixed8; do
    for engine in $order; do
      # shellcheck disable=SC2086
      "$driver" --store "$engine" --keys 1000000 --key-bytes 16 --value-bytes 32 --duration 1 $timing \
        ${cells[$cell]} > "$out/$cell-$engine-$round.json" || true
    done
  done
  [[ -x $bench ]] && "$bench" insert 1 1000000 $order 2>/dev/null | grep '^{' | sed "s/^/{\"round\": $round, \"r\": /; s/$/}/" >> "$out/insert.jsonl"
  echo "lockfree_targets: round $round/$rounds done" >&2
done
/usr/bin/python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
def med(xs): return statistics.median(xs) if xs else float("nan")
rows = {}  # (cell, engine) -> {round: million ops/s}
for f in out.glob("*-*-*.json"):
    cell, engine, rnd = f.stem.split("-")
    try:
        rows.setdefault((cell, engine), {})[int(rnd)] = json.loads(f.read_text())["aggregate"]["throughput_ops_s"] / 1e6
    except (ValueError, KeyError):
        pass
inserts = out / "insert.jsonl"
for line in inserts.read_text().splitlines() if inserts.exists() else []:
    r = json.loads(line)
    rows.setdefault(("insert", r["r"]["engine"]), {})[r["round"]] = r["r"]["median_mops"]
print(f"{'cell':8} {'seqlock':>9} {'lockfree':>9} {'ratio':>7}   million ops/s, medians; ratio of medians, then the median of each round's ratio")
for cell in ("get1", "mixed2", "mixed8", "insert"):
    a, b = rows.get((cell, "seqlock"), {}), rows.get((cell, "lockfree"), {})
    if not a or not b:
        continue
    s, l = med(list(a.values())), med(list(b.values()))
    pairs = [b[k] / a[k] for k in a if k in b]
    print(f"{cell:8} {s:9.3f} {l:9.3f} {l / s:7.3f}x  paired {med(pairs):.3f}x  ({len(pairs)} rounds)")
PY
