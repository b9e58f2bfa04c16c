"""Which harness files were left behind, for the harness tests' cleanup checks.

The driver names every file it makes ``shmht-bench-[test-]<pid>-...`` after the process
that owns the run (run.py, or the test that launched the driver itself). A file is left
behind when that owner has exited, or is this test process (whose drivers have all
exited by the time it looks). Files of harness runs still in progress elsewhere on the
machine are not counted: they are in use, not leaked.
"""

import os
import re
from pathlib import Path

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
