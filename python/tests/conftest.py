"""Fixtures shared by the shmht Python tests.

Every table gets a unique name containing this pid, and the fixture deletes its file
whatever the test's outcome, so failed runs leave nothing in /dev/shm.
"""

import itertools
import os

import pytest

import shmht

_counter = itertools.count()


def unique_name(label="t"):
    return f"shmht-pytest-{os.getpid()}-{label}-{next(_counter)}"


@pytest.fixture
def table_name(request):
    """A fresh bare table name (/dev/shm/<name>); the file is removed afterwards."""
    name = unique_name(request.node.name.split("[")[0][:40])
    yield name
    shmht.unlink(name)


@pytest.fixture(params=shmht.built_engines())
def engine(request):
    """Each engine this build implements."""
    return request.param


@pytest.fixture
def table(table_name, engine):
    """A small empty table with modest limits, closed afterwards."""
    with shmht.Table(table_name, capacity=4096, engine=engine, max_key_bytes=64, max_value_bytes=256) as t:
        yield t
