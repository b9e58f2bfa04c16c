"""The seed's scenario (pyshmht's multiprocess-test), as our own test.

N processes each insert their share of 333,333 items (keys str(i) + 'a', values
'a' * 7), then the parent iterates twice: every key present, none duplicated, and the
file's apparent size at most 64 bytes per item (pyshmht's file was 961 MB).
"""

import collections
import os

import pytest

import shmht
import workers
from proc import run_all

ITEMS = 333_333


@pytest.mark.parametrize("processes", [2, 3])
def test_seed_scenario(table_name, engine, processes):
    with shmht.Table(table_name, capacity=ITEMS, engine=engine) as t:
        run_all("fork", workers.insert_range, [(t, p, ITEMS, processes, "a") for p in range(processes)], timeout=120)
        expected = {f"{i}a".encode() for i in range(ITEMS)}
        for _ in range(2):
            counts = collections.Counter()
            for key, value in t.items():
                counts[key] += 1
                assert value == b"aaaaaaa"
            assert len(counts) == ITEMS, f"{ITEMS - len(counts)} keys missing"
            assert set(counts) == expected
            assert counts.most_common(1)[0][1] == 1, "a key was seen twice"
        assert len(t) == ITEMS
        apparent = os.stat(t.path).st_size
        assert apparent == t.stats()["apparent_bytes"]
        assert apparent <= 64 * ITEMS, f"file is {apparent} bytes, {apparent / ITEMS:.1f} per item"
