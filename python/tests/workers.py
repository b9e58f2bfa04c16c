"""Process bodies for the multi-process tests: module-level so spawn can import them.

Each worker reports failures by raising (a non-zero exit code), never by printing.
"""

import os
import time


def insert_range(table, start, stop, step, suffix):
    """Assign str(i) + suffix -> suffix * 7 for i in range(start, stop, step)."""
    value = suffix * 7
    for i in range(start, stop, step):
        table[str(i) + suffix] = value
    table.close()


def assign_overlapping(table, writer, count):
    """Every writer assigns the same keys; values name the writer."""
    value = f"writer-{writer}".encode()
    for i in range(count):
        table[f"shared-{i}"] = value
    table.close()


def churn(table, stop_at, prefix):
    """Insert and erase keys (never touching the stable ones) until the deadline."""
    i = 0
    while time.monotonic() < stop_at:
        key = f"{prefix}-{i % 2000}"
        table[key] = b"x" * (i % 50)
        if i % 3 == 0:
            table.pop(key, None)
        i += 1
    table.close()


def attach_by_name_and_insert(name, engine, keys):
    """Open by name (no pickled table) and insert; used to test engine agreement."""
    import shmht

    with shmht.Table(name, engine=engine, create=False) as t:
        for key in keys:
            t[key] = b"v"


def create_or_attach(name, barrier, rounds):
    """Every process opens-or-creates the same fresh names at the same moment."""
    import shmht

    for r in range(rounds):
        barrier.wait(10)
        with shmht.Table(f"{name}-{r}", capacity=1000, engine="global") as t:
            t[f"pid-{os.getpid()}"] = b"here"
