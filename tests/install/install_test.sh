#!/usr/bin/env bash
# What a new user does with shmht, checked in a temporary directory (suite 'install'):
#
#   install_test.sh STEP SOURCE_ROOT BUILD_ROOT
#
#   installed   configure a library-only build of SOURCE_ROOT (-Dtests=false
#               -Dbenchmarks=false -Dharness=false -Dpython=false), build it, meson install
#               it under a temporary prefix; check what was installed; then, through
#               pkg-config, build a C++ program and a C program (-std=c11 -Wall -Werror) that
#               open, put, get, delete and unlink; run them, and have a Python process
#               (BUILD_ROOT/python on PYTHONPATH) read what the C program wrote.
#   subproject  a meson project with subprojects/shmht -> SOURCE_ROOT that uses
#               dependency('shmht'): configure (none of the test or peer dependencies is
#               looked up), build and run its C and C++ programs.
#   pip-config  configure with pyproject.toml's meson-python arguments and check that the
#               build holds only the library, the CLI and the extension: no test,
#               benchmark, harness or fuzz target, and none of their dependencies.
#   pip         pip install --no-build-isolation --target TMP SOURCE_ROOT: compiles no test,
#               benchmark, harness, fuzz or example object; the package and CLI work.
#
# Builds are -Dbuildtype=plain (no optimisation): what is checked is that they work, and
# unoptimised they compile fastest.
set -euo pipefail
step=$1 src=$(cd "$2" && pwd) build_root=$(cd "$3" && pwd)
cc=${CC:-cc} cxx=${CXX:-c++}
python=/usr/bin/python3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmht-install-test.XXXXXX")
table="shmht-install-test-$$"
cleanup() {
  rm -rf "$tmp"
  rm -f "/dev/shm/$table"*
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
lean_options=(-Dtests=false -Dbenchmarks=false -Dharness=false -Dpython=false)
# What a library-only build must not look up (meson's log names every dependency it seeks).
test_and_peer_dependencies='gtest|gmock|benchmark|hwloc|lmdb|boost|hiredis|pybind11'

# The C++ consumer, and the example's C side, against the installed (or subproject) library.
run_programs() {  # run_programs BIN_DIR
  local bin=$1
  "$bin/consumer" "$table-cxx" | tee "$tmp/consumer.out"
  grep -q "consumer: removed" "$tmp/consumer.out" || fail "the C++ program did not finish"
  [ ! -e "/dev/shm/$table-cxx" ] || fail "the C++ program left /dev/shm/$table-cxx"
  "$bin/c_side" "$table" write
  PYTHONPATH="$build_root/python" PYTHONDONTWRITEBYTECODE=1 "$python" \
    "$src/examples/c_and_python/py_side.py" "$table" | tee "$tmp/py.out"
  grep -q "greeting: hello from C" "$tmp/py.out" || fail "Python did not read what C wrote"
  "$bin/c_side" "$table" read | tee "$tmp/c_read.out"
  grep -q "python replied" "$tmp/c_read.out" || fail "C did not read Python's reply"
  [ ! -e "/dev/shm/$table" ] || fail "the C program did not unlink /dev/shm/$table"
}

step_installed() {
  local prefix="$tmp/prefix" build="$tmp/build"
  meson setup "$build" "$src" --prefix "$prefix" --libdir lib -Dbuildtype=plain "${lean_options[@]}" >"$tmp/setup.log" \
    || { cat "$tmp/setup.log"; fail "library-only configure"; }
  if grep -Eiq "dependency ($test_and_peer_dependencies)" "$tmp/setup.log"; then
    grep -Ei "dependency ($test_and_peer_dependencies)" "$tmp/setup.log"
    fail "a library-only build looked up a test or peer dependency"
  fi
  meson compile -C "$build" >"$tmp/compile.log" || { tail -50 "$tmp/compile.log"; fail "library-only build"; }
  meson install -C "$build" >"$tmp/install.log" || { tail -50 "$tmp/install.log"; fail "meson install"; }

  # What is installed: headers, the shared library with its soname, the static one, the
  # pkg-config file, the CLI; and not the fault-injection header.
  for f in include/shmht.h include/shmht/table.hpp include/shmht/options.hpp include/shmht/error.hpp \
           include/shmht/engine.hpp include/shmht/check.hpp lib/libshmht.a lib/libshmht.so lib/libshmht.so.0 \
           lib/pkgconfig/shmht.pc bin/shmht; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
  done
  [ ! -e "$prefix/include/shmht/testing.hpp" ] || fail "shmht/testing.hpp (fault injection for the tests) was installed"
  ! grep -q xxhash "$prefix/lib/pkgconfig/shmht.pc" || fail "shmht.pc requires xxhash (compiled in, header-only)"
  readelf -d "$prefix/lib/libshmht.so" | grep -q 'SONAME.*\[libshmht\.so\.0\]' || fail "libshmht.so has no soname libshmht.so.0"
  "$prefix/bin/shmht" --version | grep -q "0.3.0" || fail "the installed CLI does not run"

  # Every public header compiles on its own with only the installed include directory:
  # none includes a src/ header or xxhash.
  for h in "$prefix"/include/shmht/*.hpp; do
    echo "#include <shmht/${h##*/}>" | "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$prefix/include" -x c++ - \
      || fail "$h does not compile alone"
    ! grep -q xxhash "$h" || fail "$h names xxhash"
  done
  echo "#include <shmht.h>" | "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$prefix/include" -x c - \
    || fail "shmht.h is not C11-clean"
  echo "#include <shmht.h>" | "$cxx" -std=c++11 -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" -x c++ - \
    || fail "shmht.h does not compile as C++"

  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  # shellcheck disable=SC2046
  "$cc" -std=c11 -Wall -Werror "$src/examples/c_and_python/c_side.c" $(pkg-config --cflags --libs shmht) -o "$tmp/c_side" \
    || fail "the C program does not build with pkg-config shmht"
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -Wall -Werror "$src/tests/install/consumer.cpp" $(pkg-config --cflags --libs shmht) -o "$tmp/consumer" \
    || fail "the C++ program does not build with pkg-config shmht"
  readelf -d "$tmp/c_side" | grep -q 'NEEDED.*libshmht\.so\.0' || fail "the C program is not linked to libshmht.so.0"
  LD_LIBRARY_PATH="$prefix/lib" run_programs "$tmp"
  # Statically, too: libshmht.a in place of -lshmht, with pkg-config --static's private flags.
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 "$src/tests/install/consumer.cpp" -o "$tmp/consumer-static" \
    $(pkg-config --cflags shmht) $(pkg-config --static --libs shmht | sed "s|-lshmht|$prefix/lib/libshmht.a|") \
    || fail "the C++ program does not link libshmht.a"
  "$tmp/consumer-static" "$table-cxx" >/dev/null || fail "the statically linked C++ program failed"
  # A C program linked statically with cc, which adds no C++ runtime: --static's private
  # flags must name it (libstdc++), or operator new and the C++ ABI are undefined.
  # shellcheck disable=SC2046
  "$cc" -std=c11 -Wall -Werror "$src/examples/c_and_python/c_side.c" -o "$tmp/c_side-static" \
    $(pkg-config --cflags shmht) $(pkg-config --static --libs shmht | sed "s|-lshmht|$prefix/lib/libshmht.a|") \
    || fail "the C program does not link libshmht.a with cc and pkg-config --static"
  "$tmp/c_side-static" "$table-c-static" write >/dev/null || fail "the statically linked C program failed"
  [ -e "/dev/shm/$table-c-static" ] || fail "the statically linked C program made no table"
  rm -f "/dev/shm/$table-c-static" "/dev/shm/$table-c-static.shmht-lock"
}

step_subproject() {
  local project="$tmp/consumer"
  mkdir -p "$project/subprojects"
  ln -s "$src" "$project/subprojects/shmht"
  cp "$src/examples/c_and_python/c_side.c" "$src/tests/install/consumer.cpp" "$project/"
  cat >"$project/meson.build" <<'EOF'
project('consumer', 'c', 'cpp', default_options : ['c_std=c11', 'cpp_std=c++20', 'werror=true'])
shmht = dependency('shmht', fallback : 'shmht')
executable('c_side', 'c_side.c', dependencies : shmht)
executable('consumer', 'consumer.cpp', dependencies : shmht)
EOF
  meson setup "$tmp/build" "$project" -Dbuildtype=plain --force-fallback-for=shmht >"$tmp/setup.log" \
    || { cat "$tmp/setup.log"; fail "configuring a project with shmht as a subproject"; }
  if grep -Eiq "dependency ($test_and_peer_dependencies|cli11|nlohmann)" "$tmp/setup.log"; then
    grep -Ei "dependency ($test_and_peer_dependencies|cli11|nlohmann)" "$tmp/setup.log"
    fail "shmht as a subproject looked up a dependency the library does not need"
  fi
  meson compile -C "$tmp/build" >"$tmp/compile.log" || { tail -50 "$tmp/compile.log"; fail "building the superproject"; }
  run_programs "$tmp/build"
  readelf -d "$tmp/build/c_side" | grep -q 'NEEDED.*libshmht' || fail "a default superproject did not link libshmht.so"
  # A superproject that asks for static libraries gets libshmht.a linked in.
  meson setup "$tmp/build-static" "$project" -Dbuildtype=plain -Ddefault_library=static --force-fallback-for=shmht \
    >"$tmp/setup-static.log" || { cat "$tmp/setup-static.log"; fail "configuring a static superproject"; }
  meson compile -C "$tmp/build-static" c_side >"$tmp/compile-static.log" || { tail -50 "$tmp/compile-static.log"; fail "building a static superproject"; }
  ! readelf -d "$tmp/build-static/c_side" | grep -q 'NEEDED.*libshmht' || fail "a static superproject linked libshmht.so"
  "$tmp/build-static/c_side" "$table-sub-static" write >/dev/null || fail "the static superproject's C program failed"
  rm -f "/dev/shm/$table-sub-static" "/dev/shm/$table-sub-static.shmht-lock"
}

step_pip_config() {
  # The arguments pip (meson-python) passes: [tool.meson-python.args] setup in pyproject.toml.
  mapfile -t args < <("$python" - "$src/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["tool"]["meson-python"]["args"]["setup"]))
EOF
)
  echo "pyproject.toml setup arguments: ${args[*]}"
  meson setup "$tmp/build" "$src" "${args[@]}" >"$tmp/setup.log" || { cat "$tmp/setup.log"; fail "configure as pip does"; }
  # pybind11 is the extension's; every other test or peer dependency is out.
  if grep -Ei "dependency ($test_and_peer_dependencies)" "$tmp/setup.log" | grep -vi pybind11 | grep -q .; then
    grep -Ei "dependency ($test_and_peer_dependencies)" "$tmp/setup.log"
    fail "the pip build looks up a test or peer dependency"
  fi
  meson introspect --targets "$tmp/build" >"$tmp/targets.json"
  meson introspect --tests "$tmp/build" >"$tmp/tests.json"
  "$python" - "$tmp/targets.json" "$tmp/tests.json" <<'EOF'
import json, sys
targets = json.load(open(sys.argv[1]))
names = sorted((t["name"], t["type"]) for t in targets)
# Custom targets are the package's Python files copied into the build tree.
built = [n for n in names if n[1] != "custom"]
print("pip build targets:", built)
def allowed(name, kind):
    return (name == "shmht" and kind in ("shared library", "static library", "executable")) or \
           (name.startswith("_shmht") and kind == "shared module")
extra = [n for n in built if not allowed(*n)]
if extra:
    sys.exit(f"FAIL: the pip build has targets beyond the library, the CLI and the extension: {extra}")
if not any(n[0].startswith("_shmht") for n in built) or ("shmht", "static library") not in built:
    sys.exit(f"FAIL: the pip build lacks the library or the extension: {built}")
tests = json.load(open(sys.argv[2]))
if tests:
    sys.exit(f"FAIL: the pip build registers tests: {[t['name'] for t in tests]}")
EOF
}

step_pip() {
  # -v: meson-python's build log, one line per object compiled.
  "$python" -m pip install -v --no-build-isolation --no-deps --no-cache-dir --target "$tmp/site" "$src" >"$tmp/pip.log" 2>&1 \
    || { tail -50 "$tmp/pip.log"; fail "pip install --no-build-isolation"; }
  grep -E "Compiling (C|C\+\+) object" "$tmp/pip.log" >"$tmp/objects.txt" || fail "pip's log shows no compiled object"
  echo "pip compiled $(wc -l <"$tmp/objects.txt") objects"
  if grep -E "(tests|bench|harness|fuzz|examples)/" "$tmp/objects.txt"; then
    fail "pip compiled a test, benchmark, harness, fuzz or example object (above)"
  fi
  if find "$tmp/site" -name 'libshmht*' -o -name '*.h' -o -name '*.hpp' -o -name '*.pc' | grep .; then
    fail "the pip install holds C/C++ library files (above): the wheel is the Python package and the CLI"
  fi
  PYTHONPATH="$tmp/site" PYTHONDONTWRITEBYTECODE=1 "$python" - "$table" <<'EOF'
import sys, shmht
with shmht.Table(sys.argv[1], capacity=100) as t:
    t[b"k"] = b"v"
    assert t[b"k"] == b"v", t[b"k"]
shmht.unlink(sys.argv[1])
print("pip-installed shmht works:", shmht.__file__)
EOF
  "$tmp/site/bin/shmht" --version | grep -q 0.3.0 || fail "the pip-installed CLI does not run"
}

case $step in
  installed) step_installed ;;
  subproject) step_subproject ;;
  pip-config) step_pip_config ;;
  pip) step_pip ;;
  *) fail "unknown step $step (installed, subproject, pip-config, pip)" ;;
esac
echo "install test $step: ok"
