"""pyshmht's API: module-level functions and the pyshmht package (HashTable, Cacher,
MemCacher), each with its documented behaviour and error cases."""

import json
import marshal

import pytest

import shmht
from pyshmht import Cacher, HashTable, MemCacher


@pytest.fixture
def path(table_name):
    """pyshmht programs pass absolute paths; /dev/shm/<name> is what MemCacher builds."""
    return "/dev/shm/" + table_name


def test_open_requires_capacity_to_create(path):
    with pytest.raises(shmht.error, match="capacity"):
        shmht.open(path)
    with pytest.raises(shmht.error, match="capacity"):
        shmht.open(path, 0, 1)


def test_open_getval_setval_remove_close(path):
    h = shmht.open(path, 1000)
    assert isinstance(h, int)
    assert shmht.setval(h, "key", "value") is True
    assert shmht.getval(h, "key") == b"value"
    assert shmht.getval(h, b"key") == b"value"
    assert shmht.getval(h, "absent") is None
    assert shmht.remove(h, "key") is True
    assert shmht.remove(h, "key") is False
    assert shmht.close(h) is True
    with pytest.raises(shmht.error, match="invalid ht id"):
        shmht.getval(h, "key")
    with pytest.raises(shmht.error, match="invalid ht id"):
        shmht.close(h)
    with pytest.raises(shmht.error, match="invalid ht id"):
        shmht.setval(12345678, "k", "v")


def test_positional_arguments_and_reattach(path):
    h = shmht.open(path, 500, 0)
    shmht.setval(h, "k", "v")
    h2 = shmht.open(path)  # capacity 0 attaches
    h3 = shmht.open(path, 500)  # the same capacity attaches too
    assert h2 != h and h3 not in (h, h2)
    assert shmht.getval(h2, "k") == b"v" and shmht.getval(h3, "k") == b"v"
    with pytest.raises(shmht.error, match="force_init"):
        shmht.open(path, 501)
    for handle in (h, h2, h3):
        shmht.close(handle)


def test_force_init_recreates_empty(path):
    h = shmht.open(path, 100)
    shmht.setval(h, "k", "v")
    shmht.close(h)
    h = shmht.open(path, 200, 1)
    assert shmht.getval(h, "k") is None
    shmht.setval(h, "k2", "v2")
    shmht.close(h)
    h = shmht.open(path, 200)
    assert shmht.getval(h, "k2") == b"v2"
    shmht.close(h)


def test_foreach(path):
    h = shmht.open(path, 100)
    for i in range(10):
        shmht.setval(h, f"k{i}", f"v{i}")
    seen = {}
    assert shmht.foreach(h, lambda k, v: seen.__setitem__(k, v)) is None
    assert seen == {f"k{i}".encode(): f"v{i}".encode() for i in range(10)}
    with pytest.raises(TypeError):
        shmht.foreach(h, "not callable")

    def failing(k, v):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        shmht.foreach(h, failing)
    shmht.close(h)


def test_limits_raise_error_with_sizes(path):
    h = shmht.open(path, 100)
    with pytest.raises(shmht.error, match="key is 1025 bytes; this table's maximum is 1024"):
        shmht.setval(h, "k" * 1025, "v")
    shmht.setval(h, "k" * 300, "v" * 2000)  # beyond pyshmht's 251 / 1019 limits
    assert shmht.getval(h, "k" * 300) == b"v" * 2000
    shmht.close(h)


def test_hashtable(path):
    ht = HashTable(path, 1024, True)
    ht["a"] = "1"
    ht.set("b", "2")
    c = {"hello": "world"}
    ht.setobj("c", c)
    assert ht["b"] == b"2" and ht.get("b") == b"2"
    assert ht["c"] == marshal.dumps(c) and ht.getobj("c") == c
    assert ht.get("d") is None and ht.get("d", 7) == 7 and ht.getobj("d", 8) == 8
    with pytest.raises(KeyError):
        ht["d"]
    assert "c" in ht and "d" not in ht
    del ht["c"]
    assert ht.get("c") is None
    with pytest.raises(KeyError):
        del ht["d"]
    assert ht.remove("a") is True and ht.remove("a") is False
    ht["a"] = "1"
    ht.setobj("c", c)
    assert ht.to_dict() == {b"a": b"1", b"b": b"2", b"c": marshal.dumps(c)}
    ht.update({"a": 1, "b": 2}, serialize=True)
    assert ht.to_dict(unserialize=True) == {b"a": 1, b"b": 2, b"c": c}
    pairs = []
    ht.foreach(lambda k, v: pairs.append((k, v)), unserialize=True)
    assert sorted(pairs, key=lambda kv: kv[0]) == [(b"a", 1), (b"b", 2), (b"c", c)]
    ht.close()
    with pytest.raises(shmht.error):
        ht["a"]


def test_hashtable_other_serializer_and_reattach(path):
    ht = HashTable(path, 64, True, serializer=json)
    ht.setobj("k", [1, 2])
    other = HashTable(path, serializer=json)  # capacity 0: attach
    assert other.getobj("k") == [1, 2]
    ht.close()
    other.close()


def test_cacher_write_back(table_name):
    cache = MemCacher(table_name, 1024, True)
    cache["a"] = 1
    cache["b"] = {"x": [1, 2]}
    assert cache["a"] == 1 and cache.get("b") == {"x": [1, 2]}
    assert cache.get("zz") is None and "zz" not in cache
    peer = HashTable("/dev/shm/" + table_name)
    assert peer.get("a") is None  # still only in the local cache
    cache.write_back()
    assert peer.getobj("a") == 1
    cache["c"] = 3
    assert cache.to_dict() == {b"a": 1, b"b": {"x": [1, 2]}, b"c": 3}  # to_dict writes back
    seen = {}
    cache["d"] = 4
    cache.foreach(lambda k, v: seen.__setitem__(k, v))  # so does foreach
    assert seen[b"d"] == 4
    cache.update({"e": 5})
    cache.close()  # and close
    assert peer.getobj("e") == 5
    peer.close()


def test_cacher_reads_through_and_caches(table_name):
    writer = HashTable("/dev/shm/" + table_name, 100, True)
    writer.setobj("k", "v1")
    cache = MemCacher(table_name)
    assert "k" in cache and cache["k"] == "v1"
    writer.setobj("k", "v2")
    assert cache["k"] == "v1"  # served from the process-local cache
    with pytest.raises(KeyError):
        cache["missing"]
    cache.close()
    writer.close()


def test_cacher_del(table_name):
    writer = HashTable("/dev/shm/" + table_name, 100, True)
    writer.setobj("stored", 1)
    cache = MemCacher(table_name)
    del cache["stored"]  # pyshmht raised KeyError here: uncached but existing
    assert writer.get("stored") is None
    cache["local"] = 2
    del cache["local"]
    with pytest.raises(KeyError):
        del cache["never"]
    cache.close()
    assert writer.get("local") is None
    writer.close()
