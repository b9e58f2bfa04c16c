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


# -- a temporary's identity (review R-api F1-F4) -------------------------------------------
# /proc/<pid>/fd/<n> names whatever fd n is now: after the creator closes a temporary, its
# next temporary, a named table or any other file may get the same number. A pickle (and
# a forked child) of the old table must never attach to that.


def _unpickle_in_another_process(blob):
    """What a fresh interpreter makes of `blob`: ("attached", dict) or (error name, text)."""
    script = textwrap.dedent("""
        import pickle, sys, shmht
        try:
            t = pickle.loads(sys.stdin.buffer.read())
            print("attached", dict(t))
        except Exception as e:
            print(type(e).__name__, e)
    """)
    result = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


def test_a_pickle_of_a_closed_temporary_never_attaches_to_the_next_one():
    jobs = shmht.Table.temporary(capacity=64)
    jobs[b"table"] = b"jobs"
    blob = pickle.dumps(jobs)
    jobs.close()
    with shmht.Table.temporary(capacity=64) as secrets:
        secrets[b"password"] = b"hunter2"
        assert secrets.path == jobs.path, "the fd number was reused (the case under test)"
        with pytest.raises(shmht.TableNotFoundError, match="closed by its creator"):
            pickle.loads(blob)
        shown = _unpickle_in_another_process(blob)
        assert shown.startswith("TableNotFoundError") and "hunter2" not in shown, shown


def test_a_pickle_of_a_closed_temporary_never_opens_a_named_table_or_a_file(table_name, tmp_path):
    temporary = shmht.Table.temporary(capacity=64)
    blob = pickle.dumps(temporary)
    temporary.close()
    with shmht.Table(table_name, capacity=64) as named:
        named[b"who"] = b"named"
        assert os.path.exists(temporary.path), "the fd number was reused (by the table or its lock file)"
        with pytest.raises(shmht.TableNotFoundError, match="closed by its creator"):
            pickle.loads(blob)
        shown = _unpickle_in_another_process(blob)
        assert shown.startswith("TableNotFoundError") and "named" not in shown, shown
    # Before: InvalidArgumentError / CorruptTableError for a plain file in the fd's place.
    temporary = shmht.Table.temporary(capacity=64)
    blob = pickle.dumps(temporary)
    temporary.close()
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        f.write("important log\n" * 100)
        f.flush()
        assert os.readlink(temporary.path) == str(log), "the log file got the fd number"
        with pytest.raises(shmht.TableNotFoundError, match="closed by its creator"):
            pickle.loads(blob)
        assert _unpickle_in_another_process(blob).startswith("TableNotFoundError")
    assert log.read_text() == "important log\n" * 100


def _report_after_parent_moved_on(table, parent_done, queue):
    parent_done.wait(30)
    try:
        queue.put(("attached", dict(table)))
    except Exception as e:  # noqa: BLE001 (reported to the parent)
        queue.put((type(e).__name__, str(e)))


def test_a_forked_child_keeps_its_temporary_after_the_parent_closes_it():
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    queue, parent_done = ctx.Queue(), ctx.Event()
    first = shmht.Table.temporary(capacity=64)
    first[b"table"] = b"first"
    child = ctx.Process(target=_report_after_parent_moved_on, args=(first, parent_done, queue), daemon=True)
    child.start()
    try:
        first.close()
        with shmht.Table.temporary(capacity=64) as second:
            second[b"table"] = b"second"
            parent_done.set()
            # Before the fix the child re-opened /proc/<parent>/fd/<n>: the parent's second table.
            assert queue.get(timeout=60) == ("attached", {b"table": b"first"})
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)
    assert child.exitcode == 0


def test_unlink_of_a_temporary_removes_nothing_and_says_so():
    with shmht.Table.temporary(capacity=64) as t:
        t[b"k"] = b"v"
        assert t.unlink() is False, "a temporary has no name; it goes when its last handle closes"
        assert t[b"k"] == b"v"


def _pass_on_after_parent_closed(table, parent_done, queue):
    parent_done.wait(30)
    try:
        assert dict(table) == {b"table": b"first"}  # re-opened through this child's own fd
        queue.put(_unpickle_in_another_process(pickle.dumps(table)))
    except Exception as e:  # noqa: BLE001 (reported to the parent)
        queue.put(f"{type(e).__name__} {e}")


def test_a_forked_child_can_pass_its_temporary_on_after_the_parent_closed_it():
    """The child names the table by its own descriptor (/proc/<child>/fd/<n>), kept open
    while its handle lives, so a process it pickles the table to can attach."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    queue, parent_done = ctx.Queue(), ctx.Event()
    with shmht.Table.temporary(capacity=64) as first:
        first[b"table"] = b"first"
        child = ctx.Process(target=_pass_on_after_parent_closed, args=(first, parent_done, queue), daemon=True)
        child.start()
    try:
        parent_done.set()
        assert queue.get(timeout=60) == "attached {b'table': b'first'}"
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)
    assert child.exitcode == 0


_HOLDER = r'''
import os, pickle, sys
import shmht
spare = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]  # its table fd differs from the creator's
t = pickle.loads(sys.stdin.buffer.read())
print("ready", flush=True)
sys.stdin.close()
import time
while os.path.exists(sys.argv[1]):  # the creator removes this file once it closed the table
    time.sleep(0.01)
pid = os.fork()
if pid == 0:
    try:
        print("child sees", t.get(b"a"), flush=True)
    except Exception as e:
        print("child error", type(e).__name__, e, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
'''


def test_a_fork_of_a_process_that_unpickled_a_temporary_keeps_it_after_the_creator_exits(tmp_path):
    """The forked child finds its inherited descriptor of the table whatever its number
    (review R2 F2: it looked under the creator's number and lost the table)."""
    flag = tmp_path / "creator-alive"
    flag.write_text("")
    creator = textwrap.dedent(f"""
        import pickle, subprocess, sys, os
        import shmht
        t = shmht.Table.temporary(capacity=10)
        t[b"a"] = b"1"
        holder = subprocess.Popen([sys.executable, "-c", {_HOLDER!r}, {str(flag)!r}],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        holder.stdin.write(pickle.dumps(t))
        holder.stdin.close()
        assert holder.stdout.readline() == b"ready\\n"
        t.close()
        os.unlink({str(flag)!r})
        print(holder.stdout.read().decode(), end="")
        holder.wait(timeout=60)
    """)
    result = subprocess.run([sys.executable, "-c", creator], capture_output=True, text=True, timeout=90,
                            env=os.environ.copy())
    assert "child sees b'1'" in result.stdout, (result.stdout, result.stderr)
