"""Runs a shell script with a private tmpfs mounted at $DIR, in its own mount namespace
(`unshare --mount`), so a test can fill a filesystem or make one read-only without
touching the machine's. Needs root; the calling test is skipped with the reason otherwise."""

import os
import shutil
import subprocess
import tempfile

import pytest


def run_in_private_tmpfs(script, size="16m"):
    """Runs `script` (sh) with a private tmpfs of `size` mounted at $DIR; returns the
    CompletedProcess (text output). Skips where mounting one is not allowed."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    directory = tempfile.mkdtemp(prefix="shmht-tmpfs-")
    try:
        wrapped = f'mount -t tmpfs -o size={size} tmpfs "$DIR" || exit 77\n{script}'
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
                              env={**os.environ, "DIR": directory}, capture_output=True, text=True, timeout=120)
    finally:
        os.rmdir(directory)
    if done.returncode == 77:
        pytest.skip(f"cannot mount a private tmpfs here: {done.stderr.strip()}")
    return done
