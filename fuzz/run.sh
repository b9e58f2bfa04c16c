#!/usr/bin/env bash
# Runs each fuzz target of a -Dfuzz=true build for a bounded time, starting from a copy of
# its committed corpus (fuzz/corpus/<target>/ and fuzz/regressions/<target>/): the
# repository is never written. Exits non-zero if any target found a crash, a hang, a
# sanitizer report, a leak or a model mismatch; the finding stays in the printed folder.
#
#   fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET]}
seconds=${2:-60}

# A small quarantine keeps the process small: forks (the operations target's crash
# children) copy its page tables, and fresh allocations are page faults.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:malloc_context_size=10}

work=$(mktemp -d "${TMPDIR:-/tmp}/shmht-fuzz.XXXXXX")
status=0
for target in table_file operations; do
  case $target in
    table_file) max_len=1048576 timeout=10 ;;  # a table of the seed corpus is ~350 KB
    operations) max_len=4096 timeout=30 ;;     # a crash child may take 10 s to be declared hung
  esac
  mkdir -p "$work/$target/corpus" "$work/$target/findings"
  cp fuzz/corpus/$target/* "$work/$target/corpus/"
  echo "fuzz: $target for $seconds s" >&2
  # New inputs go to the first folder (the copy); the regressions are read as seeds too
  # (git keeps no empty folder: a target may have none yet).
  seeds=("$work/$target/corpus")
  if [ -d "fuzz/regressions/$target" ]; then seeds+=("fuzz/regressions/$target"); fi
  if "$build/fuzz/${target}_fuzzer" "${seeds[@]}" \
      -max_total_time="$seconds" -max_len="$max_len" -timeout="$timeout" -rss_limit_mb=2048 \
      -artifact_prefix="$work/$target/findings/" -print_final_stats=1 >"$work/$target/log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added))' "$work/$target/log" >&2 || true
  else
    status=1
    tail -n 80 "$work/$target/log" >&2
    echo "fuzz: $target FAILED; the input is in $work/$target/findings/ (fuzz/README.md: make it a regression)" >&2
  fi
done
if [ "$status" -eq 0 ]; then rm -rf "$work"; fi
exit "$status"
