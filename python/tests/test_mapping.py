"""shmht.Table as a MutableMapping, in one process."""

import collections.abc
import os
import pickle
import random
import threading

import pytest

import shmht


def test_is_a_mutable_mapping(table):
    assert isinstance(table, collections.abc.MutableMapping)


def test_random_operations_match_a_dict_model(table):
    """Thousands of random operations; after each, the result and the contents agree
    with a dict doing the same."""
    rng = random.Random(1234)
    model = {}
    keys = [f"k{i}".encode() for i in range(300)]

    def value():
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))

    for step in range(6000):
        key = rng.choice(keys)
        op = rng.randrange(9)
        if op <= 2:
            v = value()
            table[key] = v
            model[key] = v
        elif op == 3:
            if key in model:
                del table[key]
                del model[key]
            else:
                with pytest.raises(KeyError):
                    del table[key]
        elif op == 4:
            assert table.get(key) == model.get(key)
            assert (key in table) == (key in model)
        elif op == 5:
            assert table.pop(key, None) == model.pop(key, None)
        elif op == 6:
            d = value() or b"d"
            assert table.setdefault(key, d) == model.setdefault(key, d)
        elif op == 7:
            batch = {rng.choice(keys): value() for _ in range(rng.randrange(5))}
            table.update(batch)
            model.update(batch)
        else:
            if key in model:
                assert table[key] == model[key]
            else:
                with pytest.raises(KeyError):
                    table[key]
        if step % 500 == 0:
            assert dict(table.items()) == model
            assert len(table) == len(model)
    assert dict(table) == model
    assert sorted(table.keys()) == sorted(model)
    assert sorted(table.values()) == sorted(model.values())
    assert table == model  # Mapping.__eq__


def test_str_keys_and_values_are_utf8(table):
    table["clé"] = "välue"
    assert table["clé".encode()] == "välue".encode()
    assert "clé" in table and "clé".encode() in table
    table[bytearray(b"ba")] = memoryview(b"mv")
    assert table[b"ba"] == b"mv"


def test_rejects_other_types(table):
    with pytest.raises(TypeError):
        table[1] = b"x"
    with pytest.raises(TypeError):
        table[b"x"] = 1
    with pytest.raises(TypeError):
        table[b"x"] = None


def test_too_large_is_value_error_with_both_sizes(table):
    with pytest.raises(ValueError, match="key is 65 bytes; this table's maximum is 64") as e:
        table[b"k" * 65] = b"v"
    assert isinstance(e.value, shmht.KeyTooLargeError) and e.value.code == "key_too_large"
    with pytest.raises(shmht.ValueTooLargeError, match="value is 257 bytes; this table's maximum is 256"):
        table[b"k"] = b"v" * 257
    table[b"k" * 64] = b"v" * 256  # the limits themselves fit
    assert table[b"k" * 64] == b"v" * 256


def test_values_longer_than_the_stack_buffer(table_name, engine):
    with shmht.Table(table_name, capacity=100, engine=engine, max_value_bytes=100_000) as t:
        for size in (255, 256, 257, 4096, 100_000):
            t[b"big"] = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            assert len(t[b"big"]) == size and t.get(b"big") == t[b"big"]
        assert t.get_many([b"big"]) == [t[b"big"]]


def test_get_many_matches_single_lookups_across_chunks(table):
    """get_many answers 3,000 keys (past its 1,024-key chunks and its 16-key batches) as
    t.get would, with the default for absent keys and empty values kept distinct."""
    keys = [b"key-%d" % i for i in range(3000)]
    for i in range(0, len(keys), 3):
        table[keys[i]] = b"v" * (i % 200)
    table[b"same"] = b"s"
    asked = keys + [b"same", keys[0], "key-3", b"absent"]
    assert table.get_many(asked) == [table.get(k) for k in asked]
    assert table.get_many(asked, b"-") == [table.get(k, b"-") for k in asked]
    assert table.get_many([keys[0]]) == [b""], "an empty value is present, not the default"
    assert table.get_many([]) == []


def test_popitem_clear_and_views(table):
    table.update([(b"a", b"1"), (b"b", b"2")], c=b"3")
    assert len(table.keys()) == 3 and b"a" in table.keys()
    assert (b"b", b"2") in table.items() and (b"b", b"9") not in table.items()
    k, v = table.popitem()
    assert k not in table and {b"a": b"1", b"b": b"2", b"c": b"3"}[k] == v
    table.clear()
    assert len(table) == 0 and list(table) == []
    with pytest.raises(KeyError):
        table.popitem()


def test_insert_and_setdefault_do_not_overwrite(table):
    assert table.insert(b"k", b"first") is True
    assert table.insert(b"k", b"second") is False
    assert table.setdefault(b"k", b"third") == b"first"
    assert table[b"k"] == b"first"
    with pytest.raises(TypeError):
        table.setdefault(b"absent")


def test_get_many_and_update(table):
    table.update({f"k{i}": f"v{i}" for i in range(100)})
    assert table.get_many([f"k{i}" for i in range(0, 120, 10)], b"?") == (
        [f"v{i}".encode() for i in range(0, 100, 10)] + [b"?", b"?"])
    with pytest.raises(ValueError):
        table.update([(b"a", b"b", b"c")])
    assert table.get_many([b"x" * 100], b"?") == [b"?"], "a key over max_key_bytes cannot be there: absent"


def test_table_full_error(table_name, engine):
    # The table grows past its starting capacity; only max_bytes stops it, and the error
    # says so. What it holds stays readable.
    with shmht.Table(table_name, capacity=16, max_bytes=2 << 20, max_processes=4, max_key_bytes=16,
                     max_value_bytes=16, engine=engine) as t:
        with pytest.raises(shmht.TableFullError, match="max_bytes"):
            for i in range(1_000_000):
                t[str(i)] = b"v"
        assert len(t) > 16 * 2, "the table did not grow past its starting capacity"
        assert t.stats()["growths"] >= 1
        assert all(t[str(i)] == b"v" for i in range(len(t)))


def test_closed_table_and_context_manager(table_name, engine):
    with shmht.Table(table_name, engine=engine, capacity=10) as t:
        t[b"a"] = b"b"
    assert t.closed
    with pytest.raises(ValueError, match="closed"):
        t[b"a"]
    with pytest.raises(ValueError, match="closed"):
        len(t)
    t.close()  # idempotent
    with shmht.Table(table_name, create=False) as again:  # the data outlives the handle
        assert again[b"a"] == b"b"
        assert again.engine == engine


def test_open_errors(table_name, engine):
    with pytest.raises(shmht.TableNotFoundError) as e:
        shmht.Table(table_name, create=False)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(ValueError, match="unknown engine"):
        shmht.Table(table_name, engine="nope")
    with pytest.raises(shmht.TableNotFoundError, match="directory /nonexistent-shmht-dir does not exist"):
        shmht.Table("/nonexistent-shmht-dir/t")
    with pytest.raises(shmht.InvalidArgumentError):
        shmht.Table("a/b")
    if os.geteuid() != 0:  # root ignores file permissions
        with shmht.Table(table_name, engine=engine, capacity=10, mode=0o000):
            pass
        with pytest.raises(PermissionError):
            shmht.Table(table_name, create=False)


def test_a_bad_engine_is_an_error_that_lists_the_engines(table_name):
    with pytest.raises(shmht.InvalidArgumentError) as e:
        shmht.Table(table_name, engine="bogus")
    assert isinstance(e.value, shmht.Error) and isinstance(e.value, ValueError)
    assert e.value.code == "invalid_argument"
    for name in shmht.engine_names():
        assert repr(name) in str(e.value), str(e.value)
    with pytest.raises(TypeError) as e:
        shmht.Table(table_name, engine=1)
    assert "str" in str(e.value) and "None" in str(e.value) and "int" in str(e.value), str(e.value)
    assert not os.path.exists("/dev/shm/" + table_name), "a rejected engine must not create the table"


def test_engine_mismatch_while_in_use(table_name, engine):
    others = [e for e in shmht.engine_names() if e != engine]
    with shmht.Table(table_name, engine=engine, capacity=10) as t:
        assert shmht.active_engine(table_name) == engine
        for other in others:
            expected = shmht.EngineMismatchError if other in shmht.built_engines() else shmht.EngineUnavailableError
            with pytest.raises(expected):
                shmht.Table(table_name, engine=other, create=False)
        with shmht.Table(table_name, create=False) as same:  # engine=None follows the users
            assert same.engine == engine
            t[b"x"] = b"y"
            assert same[b"x"] == b"y"


def test_corrupt_table(table_name, engine):
    with shmht.Table(table_name, engine=engine, capacity=10):
        pass
    with open(f"/dev/shm/{table_name}", "r+b") as f:
        f.write(b"\xff" * 64)  # clobber the header's magic
    with pytest.raises((shmht.CorruptTableError, shmht.VersionMismatchError)):
        shmht.Table(table_name, engine=engine, create=False)


def test_stats_and_pickle(table, table_name):
    table[b"a"] = b"b"
    stats = table.stats()
    assert stats["items"] == 1 and stats["capacity"] == 4096
    assert stats["path"] == f"/dev/shm/{table_name}" and os.getpid() in stats["attached_pids"]
    assert stats["engine"] == table.engine
    clone = pickle.loads(pickle.dumps(table))
    try:
        assert clone.path == table.path and clone[b"a"] == b"b"
    finally:
        clone.close()


def test_stats_free_by_class(table):
    for i in range(6):
        table[b"k%d" % i] = b"x" * 40
    table[b"big"] = b"y" * 250
    assert table.stats()["free_by_class"] == {}
    for i in range(6):
        del table[b"k%d" % i]
    del table[b"big"]
    stats = table.stats()
    # Record = 8-byte header + key + value, rounded up to its class (16-byte steps below 512).
    assert stats["free_by_class"] == {64: 6, 272: 1}
    assert stats["free_record_bytes"] == 6 * 64 + 272


def test_file_backed_table(tmp_path, engine):
    path = str(tmp_path / "table.shmht")
    with shmht.Table(path, engine=engine, capacity=100) as t:
        t[b"a"] = b"b"
        assert t.path == path
    assert os.path.getsize(path) > 0
    assert shmht.unlink(path) and not os.path.exists(path)


def test_default_engine_is_built():
    assert shmht.default_engine() in shmht.built_engines()
    assert shmht.default_engine() == "seqlock"  # shmht::kDefaultEngine, the CLI's default too


def test_batch_calls_release_the_gil_safely(table):
    """Threads mixing batch calls (GIL released) with single operations on one Table
    object: the handle is never used by two threads at once, and nothing is lost."""
    errors = []

    def batch_writer(tid):
        try:
            for round_ in range(30):
                table.update({f"t{tid}-{i}": f"{round_}" for i in range(50)})
                got = table.get_many([f"t{tid}-{i}" for i in range(50)])
                assert got == [f"{round_}".encode()] * 50
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    def single_writer(tid):
        try:
            for i in range(1500):
                table[f"s{tid}-{i % 50}"] = b"x"
                assert table[f"s{tid}-{i % 50}"] == b"x"
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=batch_writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=single_writer, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert len(table) == 3 * 50 + 2 * 50


def test_iteration_is_a_snapshot(table):
    """Iterators walk the table once when created: changing the table while iterating
    is allowed (no 'changed size during iteration') and does not affect them."""
    keys = {f"k{i}".encode() for i in range(100)}
    table.update((k, b"v" + k) for k in keys)
    it = iter(table)
    items = iter(table.items())
    assert it.__length_hint__() == 100
    for k in table:
        del table[k]
    assert len(table) == 0
    assert set(it) == keys
    assert dict(items) == {k: b"v" + k for k in keys}
    assert list(table) == [] and list(table.values()) == []


def test_unlink_refuses_a_file_that_is_not_a_table(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("print('not a table')\n")
    with pytest.raises(shmht.InvalidArgumentError, match="not a shmht table"):
        shmht.unlink(str(script))
    with pytest.raises(shmht.InvalidArgumentError):
        shmht.unlink(str(script), force=True)
    assert script.exists()


def test_unlink_refuses_a_table_in_use_unless_forced(table_name):
    t = shmht.Table(table_name, capacity=100)
    with pytest.raises(shmht.TableInUseError, match=str(os.getpid())):
        shmht.unlink(table_name)
    assert os.path.exists(t.path)
    assert shmht.unlink(table_name, force=True)
    assert not os.path.exists(t.path)
    t.close()


def test_table_unlink_removes_only_its_own_file(table_name):
    old = shmht.Table(table_name, capacity=100)
    assert shmht.unlink(table_name, force=True)
    new = shmht.Table(table_name, capacity=100)
    try:
        assert old.unlink() is False  # the name now names another table
        assert os.path.exists(new.path)
        assert new.unlink() is True and not os.path.exists(new.path)
    finally:
        old.close()
        new.close()


def test_add_past_a_small_max_value_bytes_names_the_key_and_the_counter(table_name):
    with shmht.Table(table_name, capacity=64, max_value_bytes=4) as t:
        t.add(b"hits", 9999)
        with pytest.raises(shmht.ValueTooLargeError, match=r"add: the counter b?'hits' would be 10000 \(5 bytes\); "
                                                            r"this table's maximum value is 4 bytes"):
            t.add(b"hits")
        assert t[b"hits"] == b"9999"
