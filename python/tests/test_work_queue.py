"""popitem as a work queue (issue 21): several processes pop at once and every item goes
to exactly one; examples/work_queue.py runs and checks itself."""

import os
import pathlib
import subprocess
import sys

import pytest

import shmht
import workers
from proc import run_all

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "work_queue.py"


def test_processes_popping_at_once_get_every_item_exactly_once(table_name, engine):
    items, processes = 3000, 4
    with shmht.Table(table_name, capacity=100_000, engine=engine) as t, \
         shmht.Table.temporary(capacity=2 * items) as results:
        stored = {f"job-{i}".encode(): str(i * 3).encode() for i in range(items)}
        t.update(stored)
        run_all("fork", workers.pop_until_empty, [(t, results) for _ in range(processes)], timeout=60)
        counts = {k[2:]: int(v) for k, v in results.items() if k.startswith(b"n:")}
        assert counts == dict.fromkeys(stored, 1), "each item popped by exactly one process"
        assert {k[2:]: v for k, v in results.items() if k.startswith(b"v:")} == stored, "each pair as stored"
        assert len(t) == 0
        with pytest.raises(KeyError, match="empty"):
            t.popitem()


def test_popitem_after_inserts_behind_the_cursor_finds_them(table):
    for i in range(100):
        table[f"a{i}"] = b"1"
    first = table.popitem()
    table[b"late"] = b"2"  # wherever it lands, it is found before the table reads as empty
    popped = dict([first] + [table.popitem() for _ in range(100)])
    assert b"late" in popped and len(popped) == 101
    with pytest.raises(KeyError):
        table.popitem()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_work_queue_example_does_every_job_once(start_method):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--jobs", "1500", "--producers", "2", "--consumers", "3",
                           "--start-method", start_method], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("1500 jobs, 3 consumers: each done once"), done.stdout
