"""Table.temporary (issue 21): an anonymous table, removed when its creator closes it or
exits, that leaves nothing in /dev/shm even when the creator is killed with SIGKILL."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

import shmht
import workers
from proc import run_all


def test_temporary_table_is_a_table_without_a_name():
    with shmht.Table.temporary(capacity=1000, engine="seqlock", max_value_bytes=100) as t:
        assert t.path.startswith(f"/proc/{os.getpid()}/fd/") and t.engine == "seqlock"
        assert os.readlink(t.path).startswith("/memfd:"), "an anonymous memory file, in no directory"
        t[b"k"] = b"v"
        assert t[b"k"] == b"v" and t.stats()["capacity"] == 1000 and t.stats()["max_value_bytes"] == 100
        with pytest.raises(shmht.ValueTooLargeError):
            t[b"k"] = b"v" * 101
        path = t.path
    with pytest.raises(shmht.Error):
        shmht.Table(path, create=False)  # the creator closed it: gone


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_children_use_it_through_pickled_copies_while_the_creator_lives(start_method):
    with shmht.Table.temporary(capacity=1000, codec="text") as t:
        t[b"from-creator"] = b"yes"
        run_all(start_method, workers.use_temporary, [(t, f"child-{i}".encode()) for i in range(2)], timeout=60)
        assert t["child-0"] == "child" and t["child-1"] == "child"
        copy = pickle.loads(pickle.dumps(t))
        assert copy.codec == "text" and copy._shares_handle_with(t)
        copy.close()


def test_a_sigkilled_creator_leaves_nothing_in_dev_shm():
    script = textwrap.dedent("""
        import sys, time, shmht
        t = shmht.Table.temporary(capacity=100_000)
        t[b"k"] = b"v" * 1000
        print(t.path, flush=True)
        time.sleep(60)
    """)
    before = set(os.listdir("/dev/shm"))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        path = child.stdout.readline().strip()
        assert path.startswith(f"/proc/{child.pid}/fd/"), path
        assert os.readlink(path).startswith("/memfd:")
        created = {name for name in set(os.listdir("/dev/shm")) - before if str(child.pid) in name}
        assert not created, f"the temporary table made {created}"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
    left = {name for name in set(os.listdir("/dev/shm")) - before if str(child.pid) in name}
    assert not left, f"SIGKILL left {left} in /dev/shm"
    assert not os.path.exists(path)
