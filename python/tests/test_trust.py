"""The trust boundary, from Python: batch calls that release the GIL must own what they
read (another thread may empty the caller's list meanwhile), and a table another user
could have planted is refused unless trust_foreign_owner=True.

The racing tests run in a child interpreter with a timeout, so a crash (the bug they
guard against) fails the test instead of killing the test run.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import shmht

# Keys and values of 200 KB, with glibc's mmap threshold fixed below that (the child's
# environment): each gets its own mapping, unmapped when Python frees it, so reading one
# after another thread freed it faults instead of reading stale bytes still there.
_RACE = textwrap.dedent(
    """
    import sys, threading, time
    import shmht

    name, operation = sys.argv[1], sys.argv[2]
    BIG = 200_000
    t = shmht.Table(name, capacity=64, engine="seqlock", max_key_bytes=BIG + 16, max_value_bytes=BIG + 16,
                    max_bytes=1 << 30)

    def fresh(n, tag):
        return [bytes([tag]) * BIG + b"%d" % i for i in range(n)]

    keys = fresh(8, 1)
    pairs = [[k, v] for k, v in zip(fresh(8, 1), fresh(8, 2))]
    stop = threading.Event()

    def mutate():
        while not stop.is_set():
            if operation == "get_many":
                keys.clear()
                keys.extend(fresh(8, 3))
            else:
                for i, pair in enumerate(pairs):  # equal keys (the table never fills), new objects
                    pair[0], pair[1] = fresh(8, 1)[i], fresh(1, 5)[0]
                time.sleep(0)

    thread = threading.Thread(target=mutate)
    thread.start()
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            if operation == "get_many":
                t.get_many(keys)
            else:
                t.update(pairs)
    finally:
        stop.set()
        thread.join()
    t.close()
    """
)


@pytest.mark.parametrize("operation", ["get_many", "update"])
def test_batch_survives_another_thread_mutating_its_argument(table_name, operation):
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    child = subprocess.run([sys.executable, "-c", _RACE, table_name, operation], env=env, capture_output=True,
                           timeout=120)
    assert child.returncode == 0, f"{operation} died ({child.returncode}): {child.stderr.decode(errors='replace')[-2000:]}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root (chown)")


@needs_root
def test_world_writable_table_of_another_user_needs_trust_foreign_owner(table_name):
    shmht.Table(table_name, capacity=100).close()
    path = f"/dev/shm/{table_name}"
    os.chmod(path, 0o666)
    os.chown(path, 65534, 65534)
    for create in (True, False):
        with pytest.raises(shmht.PermissionDeniedError, match="trust_foreign_owner"):
            shmht.Table(table_name, create=create)
        with shmht.Table(table_name, create=create, trust_foreign_owner=True) as t:
            t[b"k"] = b"v"
            assert t[b"k"] == b"v" and t.trust_foreign_owner
            with pickle.loads(pickle.dumps(t)) as copy:  # what a spawned process re-attaches with
                assert copy[b"k"] == b"v"
