"""Process bodies for the multi-process tests: module-level so spawn can import them.

Each worker reports failures by raising (a non-zero exit code), never by printing.
"""

import os
import pickle
import random
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


def add_to_counter(table, barrier, rounds):
    """The issue's counter, with Table.add."""
    barrier.wait(30)
    for _ in range(rounds):
        table.add("cnt")
    table.close()


def update_counter_text(table, barrier, rounds):
    """The issue's counter as written there, t["cnt"] = str(int(t.get("cnt", b"0")) + 1),
    made atomic with update_value."""
    barrier.wait(30)
    for _ in range(rounds):
        table.update_value("cnt", lambda v: str(int(v) + 1), default=b"0")
    table.close()


def claim_jobs(table, barrier, me, jobs, passes):
    """Claim each job with compare_and_set(b"pending" -> me), count the claim while holding
    it (the counter must never exceed 1), then hand it back."""
    barrier.wait(30)
    for _ in range(passes):
        for j in range(jobs):
            job = f"job-{j}"
            if not table.compare_and_set(job, b"pending", me):
                continue
            if table.add(f"holders-{j}") != 1:
                raise AssertionError(f"{job} held twice at once")
            table.add(f"holders-{j}", -1)
            if not table.compare_and_set(job, me, b"pending"):
                raise AssertionError(f"{job}: our claim was changed while we held it")
    table.close()


def old_pop(table, key):
    """pop as it was before Table::take: read the value, then erase the key (the value is
    returned only if this call erased it). A write in between is erased unseen."""
    value = table.get(key)
    if value is not None and table.discard(key):
        return value
    return None


def record_history(table, barrier, path, process, ops, keys, seed, use_old_pop):
    """Random get / set / insert / pop on `keys` keys; writes the records, one
    (kind, key, value, result, call_ns, ret_ns) tuple per op, pickled to `path`."""
    rng = random.Random(seed * 1000 + process)
    now = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for every process
    records = []
    barrier.wait(30)
    for seq in range(ops):
        key = f"key-{rng.randrange(keys)}"
        kind = rng.choice(("get", "get", "set", "insert", "pop", "pop"))
        value = f"p{process}-{seq}".encode() if kind in ("set", "insert") else None
        call = now()
        if kind == "get":
            result = table.get(key)
        elif kind == "set":
            table[key] = value
            result = None
        elif kind == "insert":
            result = table.insert(key, value)
        else:
            result = old_pop(table, key) if use_old_pop else table.pop(key, None)
        records.append((kind, key, value, result, call, now()))
    with open(path, "wb") as f:
        pickle.dump(records, f)
    table.close()


# -- shared handles and popitem (issue 21) ---------------------------------------------------

_kept = []  # the copies a pool worker keeps, as a long-lived worker with a cache would


def keep_copy_and_write(table, i):
    """A pool task that keeps its unpickled Table: each copy used to hold an entry of its
    own until max_processes ran out and the pool hung."""
    _kept.append(table)
    table[f"task-{i}"] = str(os.getpid())
    return os.getpid()


def pop_until_empty(table, results):
    """popitem until KeyError; each pair popped is counted in the table `results`
    (b"n:" + key: how often it was popped) with its value (b"v:" + key)."""
    while True:
        try:
            key, value = table.popitem()
        except KeyError:
            break
        results.add(b"n:" + key)
        results[b"v:" + key] = value
    table.close()
    results.close()


def use_temporary(table, key):
    """Attach to a temporary table through its pickled copy; write to it."""
    assert table.path.startswith("/proc/"), table.path
    assert table[b"from-creator"] in (b"yes", "yes")  # whatever codec the copy kept
    table[key] = b"child"
    table.close()
