"""Fixtures shared by the shmht Python tests.

Every table gets a unique name containing this pid, and the fixture deletes its file
whatever the test's outcome, so failed runs leave nothing in /dev/shm.
"""

import contextlib
import glob
import itertools
import os

import pytest

import shmht

_counter = itertools.count()


def _remove_tables_of_dead_test_processes():
    """Delete /dev/shm/shmht-pytest-<pid>-* files whose <pid> has exited: what a test run
    killed outright (a sanitizer abort, SIGKILL, a timeout) could not delete itself."""
    for path in glob.glob("/dev/shm/shmht-pytest-*"):
        pid = os.path.basename(path).split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except PermissionError:
            pass


def pytest_sessionstart(session):
    _remove_tables_of_dead_test_processes()


def unique_name(label="t"):
    return f"shmht-pytest-{os.getpid()}-{label}-{next(_counter)}"


@pytest.fixture
def table_name(request):
    """A fresh bare table name (/dev/shm/<name>); the file is removed afterwards."""
    name = unique_name(request.node.name.split("[")[0][:40])
    yield name
    # Whatever the test left (a table still in use, a damaged one, a foreign file) goes,
    # with the table's liveness lock file (src/liveness.hpp).
    for path in (f"/dev/shm/{name}", f"/dev/shm/{name}.shmht-lock"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@pytest.fixture(params=shmht.built_engines())
def engine(request):
    """Each engine this build implements."""
    return request.param


@pytest.fixture
def table(table_name, engine):
    """A small empty table with modest limits, closed afterwards."""
    with shmht.Table(table_name, capacity=4096, engine=engine, max_key_bytes=64, max_value_bytes=256) as t:
        yield t
