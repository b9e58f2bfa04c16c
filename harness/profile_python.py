#!/usr/bin/python3
"""A workload to profile, not a benchmark: 300,000 keys of 64 bytes with 64-byte values,
as harness/python_bench.py uses them.

    PYTHONPATH=build/python perf record -g /usr/bin/python3 harness/profile_python.py [ENGINE] [get|insert]
    perf report --no-children --stdio

get (default): fill a table, then 20 passes of `t[k]` in a random order.
insert: 10 times, create a table and insert every key into it, then remove it.
experiments/results/profiles/ holds what it showed (issue 13)."""
import os
import random
import sys

import shmht

N = 300_000
engine = sys.argv[1] if len(sys.argv) > 1 else "seqlock"
mode = sys.argv[2] if len(sys.argv) > 2 else "get"
keys = [b"%064d" % i for i in range(N)]
values = [b"v%063d" % i for i in range(N)]
name = f"shmht-profile-{os.getpid()}"


def new_table():
    return shmht.Table(name, capacity=N, engine=engine, max_key_bytes=64, max_value_bytes=64)


def fill(t):
    for k, v in zip(keys, values):
        t[k] = v


if mode == "insert":
    for _ in range(10):
        with new_table() as t:
            try:
                fill(t)
            finally:
                t.unlink()
else:
    look = keys[:]
    random.Random(1).shuffle(look)
    with new_table() as t:
        try:
            fill(t)
            for _ in range(20):
                for k in look:
                    t[k]
        finally:
            t.unlink()
