#!/usr/bin/env bash
# Installs shmht's build and test dependencies from Debian packages (when missing)
# and configures the meson build directory. Both README commands call this.
#
#   scripts/bootstrap.sh [BUILD_DIR]     (default: build)
#
# Environment: SHMHT_BUILDTYPE (default: release), SHMHT_MESON_ARGS (extra meson args);
# CC and CXX pick the compilers when BUILD_DIR is configured (CC=clang CXX=clang++ for fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential meson ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev libhwloc-dev hwloc liblmdb-dev
  libcli11-dev nlohmann-json3-dev libxxhash-dev
  python3-dev pybind11-dev python3-pybind11 python3-mesonpy
  python3-pip  # tests/install: a real `pip install --no-build-isolation`
  python3-matplotlib python3-pytest
  # The fuzz build (fuzz/README.md): clang, and the sanitizer and libFuzzer runtimes,
  # which clang only recommends (and recommends are not installed here).
  clang libclang-rt-14-dev libfuzzer-14-dev
  # The harness's Redis peer. Installing redis-server may start Debian's system service;
  # the harness never uses it: each run starts a private server on a unix socket.
  libhiredis-dev redis-server
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

build_dir=${1:-build}
if [ ! -f "$build_dir/build.ninja" ]; then
  # shellcheck disable=SC2086
  meson setup "$build_dir" --buildtype="${SHMHT_BUILDTYPE:-release}" ${SHMHT_MESON_ARGS:-} >&2
fi
