"""Python handles (issue 21): unpickled copies of a Table share one attachment per
process, so a pool whose workers keep their copies neither runs out of max_processes nor
hangs; closing one copy leaves the others working; threads sharing a handle are safe."""

import multiprocessing
import os
import pickle
import threading

import pytest

import shmht
import workers


def _own_entries(table):
    return table.stats()["attached_pids"].count(os.getpid())


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_with_more_tasks_than_entries_neither_fails_nor_hangs(table_name, start_method):
    """4 entries (the parent and two workers need 3); 40 tasks, whose copies the workers
    keep: one attachment per worker, not per task."""
    tasks, pool_size = 40, 2
    with shmht.Table(table_name, capacity=1000, max_processes=4) as t:
        ctx = multiprocessing.get_context(start_method)
        pool = ctx.Pool(pool_size)
        try:
            pids = pool.starmap_async(workers.keep_copy_and_write, [(t, i) for i in range(tasks)]).get(timeout=60)
        finally:
            pool.terminate()
            pool.join()
        assert len(pids) == tasks and len(set(pids)) <= pool_size
        assert all(t[f"task-{i}"] in {str(pid).encode() for pid in pids} for i in range(tasks))
        assert t.stats()["attached_pids"] == [os.getpid()], "the workers detached when they exited"


def test_copies_share_one_attachment_and_closing_one_leaves_the_others(table_name):
    with shmht.Table(table_name, capacity=100) as t:
        t[b"k"] = b"v"
        a, b = pickle.loads(pickle.dumps(t)), pickle.loads(pickle.dumps(t))
        assert a._shares_handle_with(b) and a._shares_handle_with(t), "copies share the original's attachment"
        assert _own_entries(t) == 1
        a.close()
        assert a.closed and not b.closed
        assert b[b"k"] == b"v" and t[b"k"] == b"v"
        b[b"k2"] = b"w"
        with pytest.raises(ValueError, match="closed"):
            a[b"k"]
        t.close()
        assert b[b"k2"] == b"w", "closing the original leaves a copy working"
        c = pickle.loads(pickle.dumps(b))
        assert c._shares_handle_with(b)
        b.close()
        c.close()
    with shmht.Table(table_name) as u:
        assert u.stats()["attached_pids"] == [os.getpid()], "the last copy closed detached"


def test_an_explicit_table_is_an_attachment_of_its_own(table_name):
    with shmht.Table(table_name, capacity=100) as t, shmht.Table(table_name) as u:
        assert not t._shares_handle_with(u) and _own_entries(t) == 2
        u.close()
        t[b"k"] = b"v"


def test_copies_differing_in_flags_do_not_share(table_name):
    with shmht.Table(table_name, capacity=100, engine="seqlock") as t:
        r = shmht.Table(table_name, read_only=True)
        copy_r, copy_t = pickle.loads(pickle.dumps(r)), pickle.loads(pickle.dumps(t))
        assert copy_r._shares_handle_with(r) and not copy_r._shares_handle_with(copy_t) and copy_r.read_only
        for x in (r, copy_r, copy_t):
            x.close()


def test_a_copy_after_the_name_was_reused_attaches_to_the_new_table(table_name):
    with shmht.Table(table_name, capacity=100) as old:
        old[b"which"] = b"old"
        assert old.unlink()
        with shmht.Table(table_name, capacity=100) as new:
            new[b"which"] = b"new"
            copy = pickle.loads(pickle.dumps(old))  # names the path, which is the new table now
            assert copy[b"which"] == b"new" and not copy._shares_handle_with(old)
            copy.close()


def test_threads_on_copies_sharing_one_handle(table_name, engine):
    """One C++ handle, two Python objects, two threads: batches (GIL released) and single
    operations take turns on the handle; nothing is lost."""
    with shmht.Table(table_name, capacity=50_000, engine=engine) as t:
        copy = pickle.loads(pickle.dumps(t))
        assert copy._shares_handle_with(t)
        errors = []

        def batches():
            try:
                for r in range(5):
                    copy.update({f"b{i}": str(r) for i in range(5000)})
                    assert copy.get_many([f"b{i}" for i in range(5000)]) == [str(r).encode()] * 5000
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(e)

        th = threading.Thread(target=batches)
        th.start()
        for i in range(5000):
            t[f"s{i}"] = b"x"
        th.join(60)
        assert not th.is_alive() and not errors, errors
        assert all(t[f"s{i}"] == b"x" for i in range(5000)) and len(t) == 10_000
        copy.close()


def test_a_forked_child_gets_attachments_of_its_own(table_name):
    """After fork the child's registry starts empty: its copies share the child's own
    attachment, never the parent's inherited one."""
    with shmht.Table(table_name, capacity=100) as t:
        copy = pickle.loads(pickle.dumps(t))
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if everything holds
            try:
                t[b"child"] = b"yes"  # re-attaches the inherited object in the child
                child_copy = pickle.loads(pickle.dumps(t))
                copy[b"copy"] = b"yes"
                ok = child_copy._shares_handle_with(t) and copy._shares_handle_with(t) and \
                    t.stats()["attached_pids"].count(os.getpid()) == 1
                os._exit(0 if ok else 3)
            except BaseException:  # noqa: BLE001
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert t[b"child"] == b"yes" and copy[b"child"] == b"yes"
        copy.close()
