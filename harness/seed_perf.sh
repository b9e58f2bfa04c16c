#!/usr/bin/env bash
# Where the seed emulation's kernel time goes: perf record of one seed-scenario run
# (2 processes, disk-backed file, as pyshmht's test) and of the same run on tmpfs, if
# perf works on this machine. Writes, under experiments/results/seed-perf/<timestamp>/:
#   perf-works.json            whether perf stat / perf record ran (and their exit codes)
#   <backing>.driver.json      the driver's result for that run (schema shmht-harness-run/1)
#   <backing>.report.txt       perf report --stdio --sort symbol, top entries (for reading)
#
#   harness/seed_perf.sh [DRIVER]      (default: build/harness/shmht-driver)
set -euo pipefail
cd "$(dirname "$0")/.."
driver=${1:-build/harness/shmht-driver}
out=experiments/results/seed-perf/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
perf=$(command -v perf || true)
stat_rc=127 record_rc=127
if [ -n "$perf" ]; then
  set +e
  "$perf" stat -e task-clock -o /dev/null true >/dev/null 2>&1; stat_rc=$?
  "$perf" record -q -e cpu-clock -o "$out/probe.data" true >/dev/null 2>&1; record_rc=$?
  set -e
  rm -f "$out/probe.data"
fi
printf '{"perf":"%s","perf_stat_exit":%d,"perf_record_exit":%d,"perf_event_paranoid":%s}\n' \
  "${perf:-none}" "$stat_rc" "$record_rc" "$(cat /proc/sys/kernel/perf_event_paranoid)" > "$out/perf-works.json"
cat "$out/perf-works.json"
[ "$record_rc" -eq 0 ] || { echo "seed_perf: perf record does not work here; see fault and switch counts instead" >&2; exit 0; }
for backing in disk tmpfs; do
  prefix="shmht-bench-perf-$$-"
  "$perf" record -q -g -e cpu-clock -o "$out/$backing.data" -- "$driver" --store seed-emulation --scenario seed \
    --processes 2 --keys 333333 --key-bytes 8 --value-bytes 8 --backing "$backing" --timeout 120 \
    --name-prefix "$prefix" > "$out/$backing.driver.json"
  rm -f /dev/shm/"$prefix"* /tmp/"$prefix"*
  "$perf" report -i "$out/$backing.data" --stdio --no-children --sort symbol --percent-limit 1.5 -g none \
    2>/dev/null | grep -v '^$' | head -40 > "$out/$backing.report.txt"
  rm -f "$out/$backing.data"
done
echo "seed_perf: wrote $out"
