#!/usr/bin/env bash
# Runs examples/c_and_python: the C side writes, the Python side reads what it wrote and
# replies, the C side reads the reply and removes the table. Checks each step's output and
# that no table is left in /dev/shm.
#
#   c_and_python_example.sh C_SIDE PY_SIDE PYTHON_PACKAGE_DIR [PYTHON]
set -euo pipefail
c_side=$1 py_side=$2 python_dir=$3 python=${4:-/usr/bin/python3}
name="shmht-example-$$"
trap 'rm -f "/dev/shm/$name" "/dev/shm/$name.shmht-lock"' EXIT

expect() {  # expect WHAT OUTPUT PATTERN
  if ! grep -q -- "$3" <<<"$2"; then
    echo "FAIL: $1 printed no '$3':"; echo "$2"; exit 1
  fi
}

out=$(timeout 30 "$c_side" "$name" write)
echo "$out"
expect "c_side write" "$out" "wrote greeting, 3 jobs and visits=1"

out=$(PYTHONPATH=$python_dir PYTHONDONTWRITEBYTECODE=1 timeout 30 "$python" "$py_side" "$name")
echo "$out"
expect "py_side" "$out" "greeting: hello from C"
expect "py_side" "$out" "took 3 jobs; visits = 2"

out=$(timeout 30 "$c_side" "$name" read)
echo "$out"
expect "c_side read" "$out" "python replied: python did 3 jobs (resize image 1, resize image 2, resize image 3); visit 2"
expect "c_side read" "$out" "visits=2, jobs left=0"
[ ! -e "/dev/shm/$name" ] || { echo "FAIL: /dev/shm/$name is still there"; exit 1; }
echo "example c_and_python: ok"
