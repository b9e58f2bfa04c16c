"""The API a user can trust (issue 12): read-only access, inputs that used to be silently
wrong (sizes that wrapped, any mode, bytes names, reopening with other sizes, oversize
keys in lookups), the limits a user could not reach (max_processes, max_bytes), and the
package's own details (version, signatures, docstrings, type stubs, pyshmht's layer)."""

import ast
import inspect
import os
import pathlib
import pickle
import pydoc
import re
import sys
import textwrap

import pytest

import shmht
from private_tmpfs import run_in_private_tmpfs

SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def seqlock_table(table_name):
    """A seqlock table holding k=v, closed afterwards (read-only access needs seqlock)."""
    with shmht.Table(table_name, capacity=100, engine="seqlock", max_key_bytes=8, max_value_bytes=16) as t:
        t[b"k"] = b"v"
        yield t


# -- read-only access (issue 12 section 4) -------------------------------------------------

def test_read_only_reads_and_every_write_raises_permission_denied(seqlock_table, table_name):
    with shmht.Table(table_name, read_only=True) as r:
        assert r.read_only and not seqlock_table.read_only
        assert r.engine == "seqlock" and "read_only" in repr(r)
        assert r[b"k"] == b"v" and r.get(b"k") == b"v" and b"k" in r and len(r) == 1
        assert dict(r.items()) == {b"k": b"v"} and r.get_many([b"k", b"x"]) == [b"v", None]
        assert r.stats()["attached_pids"] == [os.getpid()], "only the writer's handle: a read-only one does not attach"
        writes = [lambda: r.__setitem__(b"k", b"w"), lambda: r.__delitem__(b"k"), lambda: r.insert(b"n", b"v"),
                  lambda: r.discard(b"k"), lambda: r.pop(b"k"), lambda: r.add(b"c"), lambda: r.update({b"n": b"v"}),
                  lambda: r.compare_and_set(b"k", b"v", b"w"), lambda: r.setdefault(b"n", b"v"), lambda: r.clear(),
                  lambda: r.popitem()]
        for write in writes:
            with pytest.raises(shmht.PermissionDeniedError) as e:
                write()
            assert isinstance(e.value, PermissionError) and e.value.code == "permission_denied"
        seqlock_table[b"k"] = b"new"  # a writer's change is seen
        assert r[b"k"] == b"new"
    assert dict(seqlock_table.items()) == {b"k": b"new"}, "the refused writes changed nothing"


def test_read_only_add_is_refused_in_its_own_name(seqlock_table, table_name):
    with shmht.Table(table_name, read_only=True) as r:
        with pytest.raises(shmht.PermissionDeniedError) as info:
            r.add(b"c")
        assert str(info.value).startswith("add: ") and "compare_and_set" not in str(info.value), str(info.value)


def test_read_only_handle_survives_pickling_as_read_only(seqlock_table, table_name):
    with shmht.Table(table_name, read_only=True) as r:
        again = pickle.loads(pickle.dumps(r))
        assert again.read_only and again[b"k"] == b"v"
        again.close()


def test_read_only_never_creates(table_name):
    with pytest.raises(shmht.TableNotFoundError):
        shmht.Table(table_name, read_only=True)
    assert not os.path.exists(f"/dev/shm/{table_name}")


@pytest.mark.parametrize("engine", [e for e in shmht.built_engines() if e != "seqlock"])
def test_read_only_refuses_engines_whose_readers_write_and_says_why(table_name, engine):
    with shmht.Table(table_name, capacity=100, engine=engine):
        with pytest.raises(shmht.InvalidArgumentError, match="readers never write .*seqlock.*" + engine):
            shmht.Table(table_name, read_only=True)


READ_ONLY_MOUNT_SCENARIO = textwrap.dedent("""
    import sys
    import shmht
    path = sys.argv[1]
    try:
        shmht.Table(path)
        sys.exit("a read-write open succeeded on a read-only filesystem")
    except shmht.PermissionDeniedError as e:
        assert "read-only" in str(e), str(e)
    with shmht.Table(path, read_only=True) as t:
        assert t[b"k"] == b"v" and len(t) == 1, dict(t.items())
    print("read")
""")


def test_reads_a_table_on_a_read_only_filesystem():
    """The real use: a tmpfs remounted read-only, where the file cannot be opened for
    writing at all (and the engine lookup must not try to)."""
    create = 'import shmht, sys; t = shmht.Table(sys.argv[1], capacity=100); t["k"] = "v"; t.close()'
    done = run_in_private_tmpfs(
        f'"{sys.executable}" -c \'{create}\' "$DIR/table" && mount -o remount,ro "$DIR" && '
        f'"{sys.executable}" -c \'{READ_ONLY_MOUNT_SCENARIO}\' "$DIR/table"')
    assert done.returncode == 0 and done.stdout.split()[-1] == "read", done.stderr


# -- inputs that were silently wrong (section 5) ------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    ({"max_value_bytes": 2**40}, "max_value_bytes must be between 0 and 67108855; got 1099511627776"),
    ({"max_key_bytes": 2**32 + 5}, "max_key_bytes must be between 1 and 67108856; got 4294967301"),
    ({"max_key_bytes": 0}, "max_key_bytes must be between 1 and 67108856; got 0"),
    ({"capacity": -1}, "capacity must be between 1 and 68719476736; got -1"),
    ({"capacity": 2**64}, "capacity must be between 1 and 68719476736; got 18446744073709551616"),
    ({"max_bytes": 2**47}, "max_bytes must be between 1 and 8796093022208; got 140737488355328"),
    ({"max_processes": 0}, "max_processes must be between 1 and 4096; got 0"),
    ({"max_processes": 2**32 + 1}, "max_processes must be between 1 and 4096; got 4294967297"),
    ({"mode": 0o7777}, "mode must be between 0 and 0777; got 07777"),
    ({"mode": 0o4600}, "mode must be between 0 and 0777; got 04600"),
    ({"mode": -1}, "mode must be between 0 and 0777; got -1"),
])
def test_sizes_and_mode_outside_their_range_raise_naming_the_field(table_name, arguments, message):
    with pytest.raises(shmht.InvalidArgumentError, match=re.escape(message)) as e:
        shmht.Table(table_name, **arguments)
    assert e.value.code == "invalid_argument"
    assert not os.path.exists(f"/dev/shm/{table_name}"), "nothing was created"


def test_size_arguments_must_be_ints(table_name):
    with pytest.raises(TypeError, match="capacity must be an int"):
        shmht.Table(table_name, capacity=100.0)
    with pytest.raises(TypeError, match="mode must be an int"):
        shmht.Table(table_name, mode="0600")


def test_limits_in_range_are_kept_exactly(table_name):
    with shmht.Table(table_name, capacity=100, max_key_bytes=2**20, max_value_bytes=2**25,
                     max_bytes=100_000_000, max_processes=300) as t:
        stats = t.stats()
        assert (stats["max_key_bytes"], stats["max_value_bytes"]) == (2**20, 2**25)
        assert (stats["max_bytes"], stats["max_processes"]) == (100_003_840, 300), "max_bytes rounds up to a page"


def test_mode_is_applied_less_the_umask_as_open_does(table_name):
    previous = os.umask(0o027)
    try:
        shmht.Table(table_name, capacity=100, mode=0o666).close()
    finally:
        os.umask(previous)
    assert os.stat(f"/dev/shm/{table_name}").st_mode & 0o7777 == 0o640


def test_bytes_and_path_like_names(table_name):
    with shmht.Table(table_name.encode(), capacity=100) as t:
        assert t.path == f"/dev/shm/{table_name}", "b'name' is the name, not the file b'name'"
        t[b"k"] = b"v"
    assert not os.path.exists(f"/dev/shm/b'{table_name}'")
    path = pathlib.Path("/dev/shm") / table_name
    with shmht.Table(path, create=False) as t:
        assert t[b"k"] == b"v"
    assert shmht.active_engine(path) == shmht.active_engine(os.fsencode(path)) == "seqlock"
    with pytest.raises(TypeError):
        shmht.Table(12345)
    assert shmht.unlink(path) and not shmht.unlink(os.fsencode(path))


def test_a_name_that_is_not_utf8_round_trips(table_name):
    name = table_name.encode() + b"-\xff"
    path = b"/dev/shm/" + name
    try:
        with shmht.Table(name, capacity=100) as t:
            assert os.fsencode(t.path) == path and os.path.exists(path)
            t[b"k"] = b"v"
            again = pickle.loads(pickle.dumps(t))
            assert again[b"k"] == b"v"
            again.close()
    finally:
        for leftover in (path, path + b".shmht-lock"):  # the table and its lock file
            if os.path.exists(leftover):
                os.unlink(leftover)


@pytest.mark.parametrize("field, value", [
    ("capacity", 200), ("max_key_bytes", 9), ("max_value_bytes", 17), ("max_bytes", 64 << 20),
    ("max_processes", 16),
])
def test_reopening_with_other_sizes_raises_naming_both(seqlock_table, table_name, field, value):
    recorded = seqlock_table.stats()[field]
    with pytest.raises(shmht.InvalidArgumentError, match=f"exists with {field} {recorded}, not {value}"):
        shmht.Table(table_name, **{field: value})
    assert len(seqlock_table.stats()["attached_pids"]) == 1, "the refused handle was closed"
    with shmht.Table(table_name, **{field: recorded}) as same:  # the table's own values are fine
        assert same[b"k"] == b"v"
    with shmht.Table(table_name) as unspecified:  # as is None: whatever the table has
        assert unspecified[b"k"] == b"v"


def test_pyshmht_open_with_another_capacity_still_says_force_init(table_name):
    handle = shmht.open(table_name, 100)
    with pytest.raises(shmht.error, match="exists with capacity 100, not 200.*force_init=1") as e:
        shmht.open(table_name, 200)
    assert isinstance(e.value, shmht.InvalidArgumentError)
    shmht.close(handle)


def test_an_oversize_key_is_absent_for_lookups_and_removals(seqlock_table):
    t, oversize = seqlock_table, b"k" * 9  # the table's max_key_bytes is 8
    assert oversize not in t
    assert t.get(oversize) is None and t.get(oversize, b"?") == b"?"
    assert t.pop(oversize, b"?") == b"?"
    with pytest.raises(KeyError):
        t.pop(oversize)
    with pytest.raises(KeyError):
        t[oversize]
    with pytest.raises(KeyError):
        del t[oversize]
    assert t.discard(oversize) is False
    assert t.get_many([oversize, b"k"]) == [None, b"v"]
    assert t.compare_and_set(oversize, b"v", b"w") is False
    assert t.compare_and_set(oversize, b"v", None) is False
    assert t._compare_and_set_seen(oversize, b"v", b"w") == (False, None)
    # Stores still raise.
    for store in (lambda: t.__setitem__(oversize, b"v"), lambda: t.insert(oversize, b"v"), lambda: t.add(oversize),
                  lambda: t.compare_and_set(oversize, None, b"v"), lambda: t.setdefault(oversize, b"v")):
        with pytest.raises(shmht.KeyTooLargeError, match="key is 9 bytes; this table's maximum is 8"):
            store()
    assert dict(t.items()) == {b"k": b"v"}


# -- limits a user could not reach (section 6) --------------------------------------------

def test_max_processes_is_settable_and_its_error_names_it(table_name):
    with shmht.Table(table_name, capacity=100, max_processes=2) as a, shmht.Table(table_name) as b:
        assert a.stats()["max_processes"] == b.stats()["max_processes"] == 2
        with pytest.raises(shmht.TooManyProcessesError,
                           match=r"created with max_processes 2\).*larger max_processes \(Python max_processes="):
            shmht.Table(table_name)
        with shmht.Table(table_name, read_only=True) as reader:  # holds no entry
            assert len(reader) == 0


def test_max_bytes_is_settable_and_the_full_error_names_it(table_name):
    with shmht.Table(table_name, capacity=1000, max_value_bytes=60_000, max_bytes=8 << 20) as t:
        with pytest.raises(shmht.TableFullError, match=r"created with max_bytes 8388608.*\(Python max_bytes="):
            for i in range(1000):
                t[b"%d" % i] = b"x" * 60_000
        assert len(t) > 0


# -- packaging (section 8) -----------------------------------------------------------------

def test_version_is_the_project_version():
    version = re.search(r"^\s*version\s*:\s*'([^']+)'", (SOURCE_ROOT / "meson.build").read_text(), re.M).group(1)
    assert shmht.__version__ == version and "__version__" in shmht.__all__


# Every public method of shmht.Table with the parameters inspect.signature must report.
TABLE_METHODS = {
    "get": ["self", "key", "default"], "pop": ["self", "key", "default"], "insert": ["self", "key", "value"],
    "discard": ["self", "key"], "get_many": ["self", "keys", "default"], "add": ["self", "key", "delta"],
    "compare_and_set": ["self", "key", "expected", "desired"], "stats": ["self"], "close": ["self"],
    "keys": ["self"], "values": ["self"], "items": ["self"], "update": ["self", "other", "kwds"],
    "setdefault": ["self", "key", "default"], "popitem": ["self"], "update_value": ["self", "key", "fn", "default"],
    "clear": ["self"], "unlink": ["self"], "__init__": ["self", "name", "capacity", "engine", "create", "read_only",
                                                        "mode", "max_key_bytes", "max_value_bytes", "max_bytes",
                                                        "max_processes", "trust_foreign_owner", "codec"],
    "temporary": ["capacity", "engine", "max_key_bytes", "max_value_bytes", "max_bytes", "max_processes", "codec"],
}
MODULE_FUNCTIONS = {
    "unlink": ["name", "force"], "active_engine": ["name"], "built_engines": [], "engine_names": [],
    "default_engine": [], "encode_counter": ["value"], "counter_value": ["value"],
}


def public_methods(cls):
    return sorted(name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name)))


def test_every_public_method_has_a_signature_and_a_docstring():
    assert set(public_methods(shmht.Table)) <= set(TABLE_METHODS), "a new method: add it to TABLE_METHODS"
    for name, parameters in TABLE_METHODS.items():
        method = getattr(shmht.Table, name)
        assert list(inspect.signature(method).parameters) == parameters, name
        assert inspect.getdoc(method) and not inspect.getdoc(method).startswith(name + "("), name
    assert inspect.signature(shmht.Table.get).parameters["default"].default is None
    assert inspect.signature(shmht.Table.add).parameters["delta"].default == 1
    for name, parameters in MODULE_FUNCTIONS.items():
        assert list(inspect.signature(getattr(shmht, name)).parameters) == parameters, name
        assert inspect.getdoc(getattr(shmht, name)), name


def test_help_shows_every_method_with_its_parameters_and_docstring():
    text = pydoc.render_doc(shmht.Table, renderer=pydoc.plaintext)
    for name in public_methods(shmht.Table):
        assert re.search(rf"^ \|  {name}\((?!\.\.\.)", text, re.M), f"help(shmht.Table) shows no parameters of {name}"
        first_line = inspect.getdoc(getattr(shmht.Table, name)).splitlines()[0]
        assert first_line in text, f"help(shmht.Table) lacks the docstring of {name}"
    for parameter in ("read_only", "max_processes", "max_bytes", "umask"):
        assert parameter in text


def stub_tree():
    stub = pathlib.Path(shmht.__file__).with_name("__init__.pyi")
    assert stub.is_file() and stub.with_name("py.typed").is_file(), "the package ships its stubs (PEP 561)"
    return ast.parse(stub.read_text())


def stub_names(body):
    names = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = [node]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names[target.id] = [node]
    return names


def stub_parameters(function):
    a = function.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs] + ([a.vararg.arg] if a.vararg else []) + (
        [a.kwarg.arg] if a.kwarg else [])


def test_the_type_stubs_cover_the_runtime_api():
    module = stub_names(stub_tree().body)
    missing = [name for name in shmht.__all__ if name not in module]
    assert not missing, f"__init__.pyi lacks {missing}"
    extra = [name for name in module if not name.startswith("_") and name not in shmht.__all__]
    assert not extra, f"__init__.pyi declares {extra}, which shmht does not export"
    for name in MODULE_FUNCTIONS:
        assert stub_parameters(module[name][0]) == MODULE_FUNCTIONS[name], name
    table = stub_names(module["Table"][0].body)
    for name, parameters in TABLE_METHODS.items():
        assert name in table, f"__init__.pyi lacks Table.{name}"
        for overload in table[name]:  # every overload names the runtime parameters, in order
            declared = [p for p in stub_parameters(overload) if p != "cls"]  # a classmethod's cls is bound
            assert declared == parameters[:len(declared)] and len(declared) >= len(parameters) - 1, (name, declared)
    for name in ("path", "engine", "read_only", "closed"):
        assert name in table and hasattr(shmht.Table, name), name
    for cls in (c for c in vars(shmht).values() if isinstance(c, type) and issubclass(c, shmht.Error)):
        stub_bases = {ast.unparse(b) for b in module[cls.__name__][0].bases}
        assert stub_bases == {b.__name__ for b in cls.__bases__}, cls.__name__


# -- pyshmht's layer -------------------------------------------------------------------------

def test_pyshmht_hash_table_and_cacher_are_not_iterable_as_in_pyshmht(table_name):
    from pyshmht import Cacher, HashTable

    ht = HashTable(table_name, 100)
    cacher = Cacher(table_name)
    try:
        ht["a"] = "1"
        for mapping in (ht, cacher):
            with pytest.raises(TypeError, match="use foreach.*to_dict"):
                iter(mapping)
        assert ht.to_dict() == {b"a": b"1"}
    finally:
        cacher.close()
        ht.close()


def test_a_closed_cacher_says_it_is_closed(table_name):
    from pyshmht import Cacher

    cacher = Cacher(table_name, 100)
    cacher["a"] = 1
    cacher.close()
    for use in (lambda: cacher["a"], lambda: cacher.__setitem__("b", 2), lambda: cacher.get("a"),
                lambda: "a" in cacher, lambda: cacher.__delitem__("a"), lambda: cacher.update({"c": 3}),
                lambda: cacher.write_back(), lambda: cacher.to_dict(), lambda: cacher.foreach(print)):
        with pytest.raises(ValueError, match="closed pyshmht Cacher"):
            use()
    cacher.close()  # closing again is harmless
    again = Cacher(table_name)
    assert again["a"] == 1, "close wrote the cache back"
    again.close()
