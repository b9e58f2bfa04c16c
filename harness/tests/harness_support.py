"""What the harness's Python tests share: running a sweep file through run.py, and
finding the files a run left behind.

The driver names every file it makes ``shmht-bench-[test-]<pid>-...`` after the process
that owns the run (run.py, or the test that launched the driver itself). A file is left
behind when that owner has exited, or is this test process (whose drivers have all
exited by the time it looks). Files of harness runs still in progress elsewhere on the
machine are not counted: they are in use, not leaked.
"""

import os
import re
import subprocess
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent
RUN = HARNESS / "run.py"
PYTHON = "/usr/bin/python3"
DRIVER = os.environ.get("SHMHT_DRIVER")  # set by meson test


def run_sweep(tmp_path, name, toml_text, driver):
    """Writes `toml_text` to <tmp_path>/<name>.toml and runs it with results and plots under
    tmp_path. Returns (completed process, results dir, plots dir)."""
    sweep = tmp_path / f"{name}.toml"
    sweep.write_text(toml_text)
    results, plots = tmp_path / "results", tmp_path / "plots"
    done = subprocess.run([PYTHON, str(RUN), "--sweep", str(sweep), "--driver", driver, "--results", str(results),
                           "--plots", str(plots)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=150)
    return done, results, plots

_OWNER = re.compile(r"^shmht-bench-(?:test-)?(\d+)-")


def _owner_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def left_behind():
    """The set of shmht-bench-* files in /dev/shm and /tmp whose owner is gone (or is us)."""
    found = set()
    for directory in (Path("/dev/shm"), Path("/tmp")):
        for path in directory.glob("shmht-bench-*"):
            match = _OWNER.match(path.name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or not _owner_alive(pid):
                found.add(str(path))
    return found
