"""Ctrl-C (KeyboardInterrupt) during a long update(), iteration or get_many() is raised
promptly, between two complete operations, and leaves the table consistent.

Long batches run in C++ with the GIL released, where Python cannot run its signal
handlers; without polling, the interrupt would wait for the whole batch. Each test
delivers SIGINT from a timer thread once the batch is under way and checks that the
batch stopped early (fewer items stored or walked than a full batch) and that
`shmht check` finds the table clean."""

import os
import sys
import textwrap
import signal
import subprocess
import threading
import time

import pytest

import shmht

ITEMS = 500_000


def interrupt_after(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def assert_check_clean(path):
    cli = os.environ["SHMHT_CLI"]
    result = subprocess.run([cli, "check", path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def big_table(table_name, engine):
    with shmht.Table(table_name, engine=engine, capacity=ITEMS) as t:
        yield t
    shmht.unlink(table_name)


def test_ctrl_c_stops_update_between_items(big_table):
    pairs = [(b"key-%d" % i, b"v") for i in range(ITEMS)]
    timer = interrupt_after(0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            big_table.update(pairs)
            time.sleep(5)  # not interruptible inside update(): the signal lands here instead
    finally:
        timer.cancel()
    stored = len(big_table)
    assert 0 < stored < ITEMS, f"update() was not interrupted: {stored} of {ITEMS} stored"
    # Exactly a prefix of the pairs was stored, each one whole.
    assert big_table[b"key-0"] == b"v" and b"key-%d" % stored not in big_table
    assert_check_clean(big_table.path)


def test_ctrl_c_stops_a_walk(big_table):
    big_table.update((b"key-%d" % i, b"v") for i in range(ITEMS))
    # iter() walks the whole table in C++ (the snapshot); the keys' bytes objects are made
    # later, one per next(). Time that walk alone, then interrupt one a tenth of the way in.
    started = time.monotonic()
    iter(big_table)
    full_walk = time.monotonic() - started
    timer = interrupt_after(full_walk / 10)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            iter(big_table)
            time.sleep(5)  # not interruptible inside the walk: the signal lands here instead
    finally:
        timer.cancel()
    interrupted_after = time.monotonic() - started
    assert interrupted_after < full_walk / 2, f"walk took {full_walk:.3f} s, interrupted after {interrupted_after:.3f} s"
    assert len(big_table) == ITEMS
    assert_check_clean(big_table.path)


def test_a_signal_handler_using_the_table_during_a_batch_raises_instead_of_deadlocking(table_name):
    """A handler runs on the thread whose batch holds the handle (SignalPoll); waiting for
    that batch would wait for ever (review R-api F6: a timer handler reading a copy of the
    table hung list(t.items())). Bounded by a subprocess timeout."""
    script = textwrap.dedent(f"""
        import pickle, signal, shmht
        t = shmht.Table({table_name!r}, capacity=200_000)
        t.update({{b"k%d" % i: b"v" for i in range(150_000)}})
        copy = pickle.loads(pickle.dumps(t))  # shares t's handle
        signal.signal(signal.SIGALRM, lambda *_: copy.get(b"k1"))
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        try:
            for _ in range(50):
                list(t.items())
            print("no signal arrived during a batch")
        except RuntimeError as e:
            print("RuntimeError", e)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        assert copy.get(b"k1") == b"v" and len(t) == 150_000, "the handle works after it"
        copy.close(); t.close()
    """)
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: a signal handler using the table during a batch call hung for 60 s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("RuntimeError") and "signal handler during a batch call" in result.stdout, \
        result.stdout
