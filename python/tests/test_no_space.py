"""A table on a filesystem that fills up: Python gets shmht.NoSpaceError (an OSError with
errno ENOSPC), never SIGBUS; what was stored stays; the CLI's `load` exits non-zero and says
how many lines it stored. Each case runs in `unshare --mount` with a private 16 MiB tmpfs
(root only; skipped with the reason otherwise)."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

import shmht

SCENARIO = textwrap.dedent("""
    import errno, sys
    import shmht
    path, engine = sys.argv[1], sys.argv[2]
    value = b"v" * 200
    with shmht.Table(path, capacity=100_000, engine=engine) as t:
        stored = 0
        try:
            while stored < 1_000_000:
                t[b"key-%d" % stored] = value
                stored += 1
            sys.exit("the filesystem never filled up")
        except shmht.NoSpaceError as e:
            assert isinstance(e, OSError) and e.errno == errno.ENOSPC, (type(e), e.errno)
            assert e.code == "no_space" and "MiB free" in str(e) and "--shm-size" in str(e), str(e)
        assert stored > 0 and len(t) == stored, (stored, len(t))
        assert all(t[b"key-%d" % i] == value for i in range(stored)), "an acknowledged item is missing"
        del t[b"key-0"]
        t[b"again"] = value  # fits in the freed record
    print(stored)
""")


def run_in_private_tmpfs(script):
    """Runs `script` (sh) with a private tmpfs mounted at $DIR; skips where that is not allowed."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    directory = tempfile.mkdtemp(prefix="shmht-nospace-")
    try:
        wrapped = f'mount -t tmpfs -o size=16m tmpfs "$DIR" || exit 77\n{script}'
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
                              env={**os.environ, "DIR": directory}, capture_output=True, text=True, timeout=120)
    finally:
        os.rmdir(directory)
    if done.returncode == 77:
        pytest.skip(f"cannot mount a private tmpfs here: {done.stderr.strip()}")
    return done


def test_python_gets_no_space_error(engine):
    script = f'"{sys.executable}" -c \'{SCENARIO}\' "$DIR/table" {engine}'
    done = run_in_private_tmpfs(script)
    assert done.returncode == 0, f"exit {done.returncode} (-7 is SIGBUS): {done.stderr}"
    assert int(done.stdout.split()[-1]) > 1000


def test_cli_load_reports_no_space_and_how_far_it_got():
    cli = os.environ.get("SHMHT_CLI")
    if not cli:
        pytest.skip("SHMHT_CLI is not set (meson test sets it)")
    value = "v" * 200
    script = (f'"{cli}" create "$DIR/table" --capacity 100000 >/dev/null && '
              f'seq 1 200000 | sed "s/.*/k&\t{value}/" | "{cli}" load "$DIR/table"')
    done = run_in_private_tmpfs(script)
    assert done.returncode == 3, f"exit {done.returncode} (-7 is SIGBUS): {done.stderr}"
    assert "no space left" in done.stderr and "load stopped at line" in done.stderr, done.stderr
