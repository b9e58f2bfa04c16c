"""Opt-in value codecs (issue 21): codec="text" (str keys and values, as redis-py's
decode_responses) and codec="pickle" (any picklable value)."""

import json
import pickle

import pytest

import shmht
from shmht._codec import _TextTable


@pytest.fixture
def text_table(table_name):
    with shmht.Table(table_name, capacity=1000, codec="text") as t:
        yield t


def test_text_codec_gives_str_so_json_and_dict_equality_work(text_table):
    t = text_table
    t["a"] = "1"
    assert t == {"a": "1"} and dict(t) == {"a": "1"}
    assert json.dumps(dict(t)) == '{"a": "1"}'
    t[b"b"] = b"\xc3\xa9t\xc3\xa9"  # bytes go in as for every Table
    assert t["b"] == "été" and t.get("b") == "été" and t.get("x") is None and t.get("x", "d") == "d"
    assert sorted(t) == ["a", "b"] and sorted(t.keys()) == ["a", "b"]
    assert sorted(t.values()) == ["1", "été"] and sorted(t.items()) == [("a", "1"), ("b", "été")]
    assert t.get_many(["a", "x"], "-") == ["1", "-"]
    assert t.setdefault("a", "9") == "1" and t.setdefault("c", "3") == "3"
    assert t.update_value("a", lambda v: str(int(v) + 1)) == "2"
    assert t.add("n", 5) == 5 and t["n"] == "5", "a counter reads as its decimal text"
    assert t.compare_and_set("a", "2", "3") and t["a"] == "3"
    assert t.pop("a") == "3" and t.pop("a", None) is None
    t.update({"u": "v"}, w="x")
    assert t["u"] == "v" and t["w"] == "x"
    popped = dict(t.popitem() for _ in range(len(t)))
    assert popped == {"b": "été", "c": "3", "n": "5", "u": "v", "w": "x"}
    assert t.codec == "text" and "codec='text'" in repr(t) and isinstance(t, shmht.Table)


def test_text_codec_raises_on_a_value_that_is_not_utf8(text_table):
    with shmht.Table(text_table.path) as raw:
        raw[b"bin"] = b"\xff"
    with pytest.raises(UnicodeDecodeError):
        text_table["bin"]


def test_pickle_codec_stores_any_picklable_value(table_name):
    with shmht.Table(table_name, capacity=1000, codec="pickle") as t:
        t["job"] = {"id": 7, "args": [1, 2.5, None]}
        assert t["job"] == {"id": 7, "args": [1, 2.5, None]}
        assert t.insert("other", (1, 2)) and not t.insert("other", 3)
        assert dict(t.items()) == {b"job": {"id": 7, "args": [1, 2.5, None]}, b"other": (1, 2)}
        assert t.update_value("other", lambda v: v + (3,)) == (1, 2, 3)
        assert t.compare_and_set("other", (1, 2, 3), "done") and t.get("other") == "done"
        copy = pickle.loads(pickle.dumps(t))
        assert copy.codec == "pickle" and copy["other"] == "done"
        copy.close()
        key, value = t.popitem()
        assert (key, value) in [(b"job", {"id": 7, "args": [1, 2.5, None]}), (b"other", "done")]
        with shmht.Table(table_name) as raw:  # the bytes are the pickle
            assert pickle.loads(next(iter(raw.values()))) is not None


def test_a_bad_codec_or_value_type_names_what_is_accepted(table_name, text_table):
    with pytest.raises(ValueError, match=r"unknown codec 'json'; the codecs are None \(bytes\), 'text', 'pickle'"):
        shmht.Table(table_name, codec="json")
    with shmht.Table(table_name) as t:
        with pytest.raises(TypeError, match=r"must be bytes, str \(stored as UTF-8\), bytearray or memoryview.*not int"):
            t[b"k"] = 1
        with pytest.raises(TypeError, match=r"keys must be bytes, str .*bytearray or memoryview.*not float"):
            t[1.5] = b"v"
    with pytest.raises(TypeError, match=r"codec='text'\) values must be str, bytes, bytearray or memoryview, not dict"):
        text_table["k"] = {}


# -- a value the codec cannot decode (review R-api F5, F9) -------------------------------------


def _decode_error(codec):
    return UnicodeDecodeError if codec == "text" else pickle.UnpicklingError


@pytest.mark.parametrize("codec, junk", [("text", b"\xff\xfe"), ("pickle", b"not a pickle")])
def test_pop_and_popitem_keep_an_item_they_cannot_decode(table_name, codec, junk):
    with shmht.Table(table_name, capacity=64) as raw, shmht.Table(table_name, codec=codec) as t:
        raw[b"bad"] = junk
        with pytest.raises(_decode_error(codec), match="b'bad'.*put back") as info:
            t.pop("bad")
        assert raw[b"bad"] == junk, "pop lost the item it could not decode"
        assert not hasattr(info.value, "shmht_value")
        with pytest.raises(_decode_error(codec), match="b'bad'.*put back"):
            t.popitem()
        assert dict(raw) == {b"bad": junk}, "popitem lost the item it could not decode"


def test_an_undecodable_item_restored_meanwhile_comes_with_the_error(table_name):
    """If the key holds a new value by the time pop puts the old one back, the old bytes
    go with the exception (nothing is overwritten, nothing silently dropped)."""
    with shmht.Table(table_name, capacity=64) as raw:
        class Racing(_TextTable):
            __slots__ = ()

            @staticmethod
            def _decode(data):
                raw[b"bad"] = b"newer"  # another process stores the key again meanwhile
                return data.decode("utf-8")

        t = shmht.Table(table_name)
        t.__class__ = Racing
        raw[b"bad"] = b"\xff"
        with pytest.raises(UnicodeDecodeError, match="b'bad'.*could not be put back") as info:
            t.pop("bad")
        assert (info.value.shmht_key, info.value.shmht_value) == (b"bad", b"\xff")
        assert raw[b"bad"] == b"newer"
        t.close()


@pytest.mark.parametrize("codec, junk", [("text", b"\xff"), ("pickle", b"junk")])
def test_a_value_the_codec_cannot_decode_is_named_by_its_key(table_name, codec, junk):
    with shmht.Table(table_name, capacity=64) as raw, shmht.Table(table_name, codec=codec) as t:
        raw[b"bin"] = junk
        for read in (lambda: t["bin"], lambda: t.get("bin"), lambda: t.get_many(["bin"]), lambda: list(t.values()),
                     lambda: list(t.items())):
            with pytest.raises(_decode_error(codec), match="value of key b'bin'"):
                read()


def test_popitem_keeps_an_item_whose_key_is_not_utf8(table_name):
    with shmht.Table(table_name, capacity=64) as raw, shmht.Table(table_name, codec="text") as t:
        raw[b"\xff"] = b"v"
        with pytest.raises(UnicodeDecodeError, match=r"the key b'\\xff'; the item was put back"):
            t.popitem()
        assert dict(raw) == {b"\xff": b"v"}
