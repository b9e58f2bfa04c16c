"""A table on a filesystem that fills up: Python gets shmht.NoSpaceError (an OSError with
errno ENOSPC), never SIGBUS; what was stored stays; the CLI's `load` exits non-zero and says
how many lines it stored. Each case runs in `unshare --mount` with a private 16 MiB tmpfs
(root only; skipped with the reason otherwise)."""

import os
import sys
import textwrap

import pytest

from private_tmpfs import run_in_private_tmpfs

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
