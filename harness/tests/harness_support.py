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


def _is_zombie(pid):
    """True for an exited process not yet reaped (it runs nothing and holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True  # gone


def redis_servers(marker="shmht-bench-"):
    """{pid: command line} of live redis-server processes whose command line contains `marker`.

    The harness's servers name their socket, and so their directory, after the run's
    --name-prefix (redis-server shows "unixsocket:<path>" as its process title)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "redis-server" in command and marker in command and not _is_zombie(int(entry.name)):
            found[int(entry.name)] = command.strip()
    return found


def redis_servers_left_behind():
    """Live harness redis-servers whose owner is gone (or is us): a leak, as in left_behind."""
    leaked = {}
    for pid, command in redis_servers().items():
        match = re.search(r"shmht-bench-(?:test-)?(\d+)-", command)
        if match and (int(match.group(1)) == os.getpid() or not _owner_alive(int(match.group(1)))):
            leaked[pid] = command
    return leaked
