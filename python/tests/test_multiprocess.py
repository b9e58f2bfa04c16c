"""Several processes on one table through multiprocessing, with fork and with spawn.

Every run is bounded (proc.run_all joins with a deadline and kills leftovers); table
files are removed by the table_name fixture.
"""

import collections
import multiprocessing
import os
import threading
import time

import pytest

import shmht
import workers
from proc import run_all

START_METHODS = ["fork", "spawn"]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_disjoint_writers_lose_and_duplicate_nothing(table_name, engine, start_method):
    processes, items = 4, 20_000
    with shmht.Table(table_name, capacity=items, engine=engine) as t:
        # The Table object itself is passed: fork re-attaches it lazily, spawn pickles it.
        run_all(start_method, workers.insert_range, [(t, p, items, processes, "a") for p in range(processes)])
        keys = list(t)
        assert len(keys) == items == len(t)
        assert len(set(keys)) == items, "duplicated keys"
        assert set(keys) == {f"{i}a".encode() for i in range(items)}
        assert all(v == b"aaaaaaa" for v in t.values())


@pytest.mark.parametrize("start_method", START_METHODS)
def test_overlapping_writers_leave_one_value_per_key(table_name, engine, start_method):
    writers, count = 3, 5_000
    with shmht.Table(table_name, capacity=count, engine=engine) as t:
        run_all(start_method, workers.assign_overlapping, [(t, w, count) for w in range(writers)])
        items = list(t._items())
        assert len(items) == count == len(t)
        assert collections.Counter(k for k, _ in items).most_common(1)[0][1] == 1, "duplicated keys"
        assert {v for _, v in items} <= {f"writer-{w}".encode() for w in range(writers)}


@pytest.mark.parametrize("start_method", START_METHODS)
def test_iteration_during_writes_sees_every_stable_key(table_name, engine, start_method):
    stable = {f"stable-{i}".encode(): f"{i}".encode() for i in range(3000)}
    with shmht.Table(table_name, capacity=10_000, engine=engine) as t:
        t.update(stable)
        ctx = multiprocessing.get_context(start_method)
        stop_at = time.monotonic() + 3.0
        procs = [ctx.Process(target=workers.churn, args=(t, stop_at, f"churn{p}"), daemon=True) for p in range(2)]
        try:
            for p in procs:
                p.start()
            walks = 0
            while time.monotonic() < stop_at:
                seen = collections.Counter(k for k in t if k.startswith(b"stable-"))
                assert set(seen) == set(stable), "a stable key was missed"
                assert max(seen.values()) == 1, "a stable key was seen twice"
                items = dict(t.items())
                assert all(items[k] == v for k, v in stable.items())
                walks += 1
            assert walks >= 2
            for p in procs:
                p.join(30)
            assert [p.exitcode for p in procs] == [0, 0]
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(5)


def test_fork_child_reattaches_without_help(table_name, engine):
    """A bare os.fork(): the child's first operation re-opens the table by name."""
    with shmht.Table(table_name, capacity=100, engine=engine) as t:
        t[b"parent"] = b"1"
        pid = os.fork()
        if pid == 0:  # child: exit code says whether it could read and write
            code = 1
            try:
                ok = t[b"parent"] == b"1"
                t[b"child"] = str(os.getpid()).encode()
                code = 0 if ok and os.getpid() in t.stats()["attached_pids"] else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("forked child hung")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
        assert t[b"child"] == str(pid).encode()


def test_fork_while_a_batch_runs_in_another_thread(table_name, engine):
    """Forking while another thread holds the handle in a batch call (GIL released)
    must not leave the child waiting for a thread that does not exist there."""
    with shmht.Table(table_name, capacity=200_000, engine=engine) as t:
        running = threading.Event()

        def batches():
            running.set()
            for r in range(5):
                t.update({f"b{i}": str(r) for i in range(20_000)})

        th = threading.Thread(target=batches)
        th.start()
        running.wait()
        run_all("fork", workers.insert_range, [(t, 0, 100, 1, "f")], timeout=30)
        th.join(60)
        assert not th.is_alive()
        assert all(f"{i}f".encode() in t for i in range(100))


def test_spawned_process_attaches_by_name(table_name, engine):
    with shmht.Table(table_name, capacity=100, engine=engine) as t:
        run_all("spawn", workers.attach_by_name_and_insert, [(table_name, None, [b"s1", b"s2"])])
        assert t[b"s1"] == b"v" and t[b"s2"] == b"v"


def test_processes_creating_the_same_table_at_once(table_name):
    """open-or-create races: every racer gets the one complete table (none sees a
    half-initialised file as corrupt), and all their writes land in it."""
    processes, rounds = 4, 15
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    try:
        run_all("fork", workers.create_or_attach, [(table_name, barrier, rounds)] * processes, timeout=60)
        for r in range(rounds):
            with shmht.Table(f"{table_name}-{r}", create=False) as t:
                assert len(t) == processes
    finally:
        for r in range(rounds):
            shmht.unlink(f"{table_name}-{r}")
