#!/usr/bin/env bash
# cli_test.sh - the shmht command line, end to end: every subcommand, its output and its
# exit status. Usage: cli_test.sh PATH_TO_SHMHT
set -euo pipefail
shmht=$1
name="shmht-cli-test-$$"
trap 'rm -f "/dev/shm/$name" "/dev/shm/$name-foreign"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
expect_status() {  # expect_status CODE CMD...
  local want=$1; shift
  set +e; "$@" >/tmp/shmht-cli-out.$$ 2>&1; local got=$?; set -e
  [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $(cat /tmp/shmht-cli-out.$$)"
}

expect_status 0 "$shmht" create "$name" --capacity 1000 --max-key-bytes 64   # the default engine: seqlock
expect_status 3 "$shmht" create "$name"                               # exists
grep -q already_exists /tmp/shmht-cli-out.$$ || fail "create of an existing table did not say already_exists"
expect_status 0 "$shmht" put "$name" alpha one
[ "$("$shmht" get "$name" alpha)" = one ] || fail "get did not return the put value"
expect_status 1 "$shmht" get "$name" missing
expect_status 3 "$shmht" put "$name" "$(printf 'k%.0s' {1..65})" v   # key over the limit
grep -q "65 bytes" /tmp/shmht-cli-out.$$ || fail "oversize key message does not give the size"

printf 'tab\\tkey\tnew\\nline\nback\\\\slash\tv2\n' | "$shmht" load "$name" 2>/dev/null
[ "$("$shmht" dump "$name" | sort | tr '\n' '|')" = 'alpha	one|back\\slash	v2|tab\tkey	new\nline|' ] ||
  fail "dump did not round-trip escapes: $("$shmht" dump "$name" | tr '\n' '|')"
expect_status 2 sh -c "printf 'no tab here\n' | '$shmht' load '$name'"

json=$("$shmht" stat "$name" --json)
for field in engine slots items load_factor apparent_bytes resident_bytes bytes_per_item attached_pids; do
  echo "$json" | grep -q "\"$field\"" || fail "stat --json lacks $field: $json"
done
echo "$json" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["items"]==3 and d["engine"]=="seqlock", d' ||
  fail "stat --json is not valid JSON with items=3: $json"
"$shmht" stat "$name" | grep -q "items  *3 of capacity 1000" || fail "human stat output lacks the item count"

expect_status 0 "$shmht" check "$name"
expect_status 0 "$shmht" del "$name" alpha
expect_status 1 "$shmht" del "$name" alpha
expect_status 2 "$shmht" get "$name" alpha --engine nosuch
expect_status 2 "$shmht" frobnicate "$name"
expect_status 2 "$shmht" create "$name-x" --capacity -5
head -c 8192 /dev/urandom > "/dev/shm/$name-foreign"
expect_status 3 "$shmht" stat "$name-foreign"
grep -q "bad magic" /tmp/shmht-cli-out.$$ || fail "foreign file not reported as bad magic"
expect_status 0 "$shmht" rm "$name"
expect_status 1 "$shmht" rm "$name"
rm -f /tmp/shmht-cli-out.$$

if [ "$failures" -ne 0 ]; then echo "$failures failed"; exit 1; fi
echo "cli: all checks passed"
