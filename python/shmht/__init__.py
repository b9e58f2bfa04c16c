"""shmht: a hash table in shared memory that many processes use at once, as a dict.

    import shmht

    with shmht.Table("users", capacity=1_000_000) as t:   # /dev/shm/users
        t[b"alice"] = b"42"
        t["bob"] = "7"            # str is accepted and stored as UTF-8
        t[b"alice"]               # b'42'

Any process that opens the same name sees the same items. `shmht.Table` works with
`multiprocessing` under both the fork and spawn start methods: a table is attached by
name, never by an inherited handle.

The module also offers pyshmht's functions (`open`, `close`, `getval`, `setval`,
`remove`, `foreach`, `error`); see python/COMPATIBILITY.md.
"""

import os
from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, ValuesView

from . import _shmht
from ._shmht import (
    CorruptTableError,
    CounterOverflowError,
    EngineMismatchError,
    EngineUnavailableError,
    Error,
    InvalidArgumentError,
    KeyTooLargeError,
    NoSpaceError,
    NotACounterError,
    PermissionDeniedError,
    SystemCallError,
    TableExistsError,
    TableFullError,
    TableNotFoundError,
    TableInUseError,
    TooManyProcessesError,
    ValueTooLargeError,
    VersionMismatchError,
    __version__,
    built_engines,
    counter_value,
    encode_counter,
    engine_names,
)

__all__ = [
    "__version__", "Table", "default_engine", "built_engines", "engine_names", "active_engine", "unlink",
    "DEFAULT_CAPACITY", "DEFAULT_MAX_KEY_BYTES", "DEFAULT_MAX_VALUE_BYTES", "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PROCESSES", "DEFAULT_MODE",
    "Error", "KeyTooLargeError", "ValueTooLargeError", "TableFullError", "CorruptTableError",
    "VersionMismatchError", "EngineMismatchError", "EngineUnavailableError",
    "PermissionDeniedError", "TableNotFoundError", "TableExistsError", "TableInUseError", "TooManyProcessesError",
    "InvalidArgumentError", "SystemCallError", "NoSpaceError", "NotACounterError", "CounterOverflowError",
    "encode_counter", "counter_value",
    # pyshmht compatibility
    "open", "close", "getval", "setval", "remove", "foreach", "error",
]

#: A new table's starting size when `capacity` is not given (the C++ CreateOptions
#: default). Tables grow on their own (the slot array doubles online when it fills), so
#: capacity only saves the early doublings of a table known to become large.
DEFAULT_CAPACITY = 1000
#: Longest key and value a new table accepts when not given (the C++ defaults).
DEFAULT_MAX_KEY_BYTES = 1024
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
#: The most a new table's file may grow to when not given (64 GiB: address space each
#: process reserves, not memory; the file grows with the data).
DEFAULT_MAX_BYTES = 64 << 30
#: Handles a new table lets be open at once, over all processes, when not given.
DEFAULT_MAX_PROCESSES = 128
#: Permission bits of a new table's file when not given (the umask applies, as for open()).
DEFAULT_MODE = 0o600
#: Page size max_bytes is rounded up to when the table is created (C++ CreateOptions).
_PAGE_BYTES = 4096


def _path_bytes(name):
    """The table name or path `name` (str, bytes or os.PathLike) as the bytes the
    operating system gets, as open() takes file names; TypeError for anything else."""
    return os.fsencode(name)


def active_engine(name):
    """The engine the table `name` was last opened with (what its live users use).
    `name` is a str, bytes or os.PathLike; TableNotFoundError if there is no table."""
    return _shmht.active_engine(_path_bytes(name))


def unlink(name, *, force=False):
    """Delete the table file `name` (a str, bytes or os.PathLike); False if there was none.

    Only a shmht table is removed (any other file raises InvalidArgumentError and stays).
    While live processes are attached it raises TableInUseError naming their pids, unless
    force=True; then they keep using the removed file and new openers get a new table."""
    return _shmht.unlink(_path_bytes(name), force=bool(force))


def default_engine():
    """The engine a new table gets when none is named: the library's one default
    (shmht::kDefaultEngine, "seqlock"), the same in C++, the CLI and here."""
    return _shmht.default_engine_name()


def _checked_engine(engine):
    """`engine` if it is the name of an engine (built or not: an unbuilt one raises
    EngineUnavailableError when attached); else an error that lists the engines."""
    names = engine_names()
    if not isinstance(engine, str):
        raise TypeError(f"engine must be None (the table's engine) or a str, one of {', '.join(map(repr, names))}; "
                        f"got {type(engine).__name__} {engine!r}")
    if engine not in names:
        error = InvalidArgumentError(f"unknown engine {engine!r}; the engines are {', '.join(map(repr, names))}")
        error.code = "invalid_argument"  # as the errors raised in C++ carry
        raise error
    return engine


def _resolve_engine(name, engine):
    """The engine to attach with: the named one, else the one the table's users already
    use (so that processes agree without saying), else default_engine() for a new table."""
    if engine is not None:
        return _checked_engine(engine)
    try:
        return active_engine(name)
    except TableNotFoundError:
        return default_engine()


def _check_created_with(table, given):
    """Raise InvalidArgumentError (closing `table`) if the table was created with other
    values of the parameters in `given` ({name: value} of those passed explicitly): a
    table's sizes are fixed at creation, and reopening it with others must not pass
    silently (as pyshmht's open, which shmht.open follows, refuses another capacity)."""
    recorded = table.stats()
    for field, value in given.items():
        expected = -(-value // _PAGE_BYTES) * _PAGE_BYTES if field == "max_bytes" else value
        if recorded[field] != expected:
            path = table.path
            table.close()
            error = InvalidArgumentError(
                f"{path} exists with {field} {recorded[field]}, not {value} (a table's sizes are fixed when it is "
                f"created): open it without {field}= to use it as it is, or remove it (shmht.unlink) and create it "
                "again")
            error.code = "invalid_argument"
            error._mismatched_field = field  # for shmht.open's pyshmht-worded hint
            raise error


class _ValuesView(ValuesView):
    """Values from one walk of the table (the Mapping mixin would look up each key again
    and fail on keys erased meanwhile)."""

    __slots__ = ()

    def __iter__(self):
        return iter(self._mapping._values())


class _ItemsView(ItemsView):
    """(key, value) pairs from one walk of the table."""

    __slots__ = ()

    def __iter__(self):
        return iter(self._mapping._items())


class Table(_shmht._TableBase, MutableMapping):
    """A dict of bytes to bytes in shared memory, shared by every process that opens it.

    Table(name, *, capacity=None, engine=None, create=True, read_only=False, mode=0o600,
          max_key_bytes=None, max_value_bytes=None, max_bytes=None, max_processes=None,
          trust_foreign_owner=False)

    name
        A bare name ("users" means /dev/shm/users) or an absolute path (a regular file),
        as a str, bytes or os.PathLike (pathlib.Path), as open() takes file names.
    capacity
        The starting size: items the first slot array holds. The table grows past it
        on its own (the slot array doubles online), so this only saves the early
        doublings of a table known to become large. None means DEFAULT_CAPACITY (1,000).
    engine
        The concurrency protocol: "global", "striped", "seqlock" or "lockfree" (see
        built_engines()). None means: the engine the table's current users have, or for
        a new table default_engine() ("seqlock", as in C++ and the CLI). All processes
        using a table at the same time must use the same engine (EngineMismatchError).
    create
        True: open the table, creating it if it does not exist. False: it must exist
        (TableNotFoundError otherwise).
    read_only
        True: open an existing table (never create one) for reading only: the file is
        opened O_RDONLY and mapped read-only, so a table the caller may only read (mode
        0o644 of another user, a read-only filesystem) can be read. Writes raise
        PermissionDeniedError. Only for tables used with the "seqlock" engine, whose
        readers never write to shared memory (InvalidArgumentError says why otherwise).
        A read-only handle does not attach: it is not among stats()["attached_pids"].
    trust_foreign_owner
        True: open a table that another user owns even where it could be a plant. By
        default (like ssh's StrictModes) a table whose owner is neither you nor root is
        refused with PermissionDeniedError when every user may write it, or when you are
        root and open it for writing: whoever owns or may write a table can read and
        rewrite what you store. Tables shared within a group (mode 0o660) or published
        read-only (0o644) need no opt-in.
    mode
        Permission bits (0 to 0o777) of a new table's file; as with open(), the umask
        applies (0o666 under the usual umask 0o022 gives 0o644).
    max_key_bytes, max_value_bytes
        Longest key and value of a new table (defaults 1024 and 65536).
    max_bytes
        The most the table's file may grow to (default 64 GiB, rounded up to 4096 bytes):
        address space each process reserves, not memory. Past it, writes raise
        TableFullError.
    max_processes
        Handles that may be open on the table at once, over all processes (default 128;
        1 to 4096): each open read-write handle, in any process, holds one entry, and one
        more raises TooManyProcessesError. Size it for your process pool: workers (times
        the handles each opens) plus the parent and any tools. Each entry costs about
        2 KiB of the file.

    capacity, max_key_bytes, max_value_bytes, max_bytes and max_processes are fixed when
    the table is created. Given explicitly for a table that exists, each must equal the
    table's (InvalidArgumentError names the field, the table's value and the given one);
    None accepts whatever the table has. A value outside its range raises
    InvalidArgumentError naming the field and the range (never wrapped to fit).

    codec
        How values (and keys) are turned into the table's bytes, for this handle only
        (the table stores bytes; each handle may read them its own way):
        None     bytes in, bytes out (the default and the fastest path);
        "text"   keys and values come back as str (UTF-8), as redis-py's
                 decode_responses: json.dumps(dict(t)) and t == {"a": "1"} work. str or
                 bytes are accepted; a stored value that is not UTF-8 raises
                 UnicodeDecodeError when read;
        "pickle" values are any picklable object, stored pickled (keys stay bytes/str,
                 and come back as bytes); compare_and_set and update_value compare the
                 pickled bytes. Reading a value runs the code its pickle names: anyone
                 who can write the table can run code in this process. Use it only on
                 tables whose every writer you trust. add works on decimal text, not
                 pickles: read a counter with add(key, 0).
        A value the codec cannot decode raises the codec's error (UnicodeDecodeError,
        pickle.UnpicklingError, ...) naming the key; pop and popitem put that item back
        (or, if the key holds a newer value by then, attach the removed bytes to the
        exception as shmht_key and shmht_value), so nothing is lost.

    Keys and values are bytes. A str is accepted anywhere a key or value is expected and
    is encoded as UTF-8 (so "a" and b"a" are the same key); so is any object with the
    buffer protocol (bytearray, memoryview). Values and keys come back as bytes (unless
    codec says otherwise).

    Iteration, keys(), values() and items() walk the table once and iterate over a
    snapshot: a key present during the whole walk is seen exactly once; keys inserted or
    erased meanwhile may or may not be. No operation raises because another process
    changed the table.

    Atomic operations: every single-key method is one atomic step: t[k], t[k] = v,
    del t[k], get, insert, discard, pop, popitem, setdefault, compare_and_set, add (see
    each docstring). update_value is a compare_and_set retry loop (fn may run more than
    once); update and clear are several atomic steps, not one.

    Errors: KeyError for a missing key; KeyTooLargeError / ValueTooLargeError (both
    ValueError) when a key or value to store exceeds the table's limit, with both sizes
    in the message (a lookup or removal of a key longer than the limit finds nothing, as
    such a key cannot be in the table); TableFullError; CorruptTableError;
    EngineMismatchError; PermissionDeniedError (a PermissionError); all derive from
    shmht.Error.

    With multiprocessing, pass the Table itself: under fork the child re-attaches on first
    use, under spawn it pickles as (path, engine, read_only, trust_foreign_owner, codec) and
    re-attaches (never re-creates). The copies unpickled in one process share one
    attachment (one of max_processes), detached when the last of them is closed or
    collected; closing one copy leaves the others working. A Table opened explicitly with
    Table(...) is an attachment of its own.
    """

    __slots__ = ()

    #: The value codec of this handle: None (bytes), "text" or "pickle" (see help(Table)).
    codec = None

    def __init__(self, name, *, capacity=None, engine=None, create=True, read_only=False, mode=DEFAULT_MODE,
                 max_key_bytes=None, max_value_bytes=None, max_bytes=None, max_processes=None,
                 trust_foreign_owner=False, codec=None):
        """Open the table `name`, creating it unless it exists, create=False or
        read_only=True (see help(shmht.Table) for every parameter)."""
        codec_class = _codec_class(codec)  # a bad codec fails before anything is opened
        path = _path_bytes(name)
        read_only = bool(read_only)
        if read_only:  # opens only: None adopts the table's engine
            engine = None if engine is None else _checked_engine(engine)
        else:
            engine = _resolve_engine(path, engine)
        given = {field: value for field, value in (("capacity", capacity), ("max_key_bytes", max_key_bytes),
                                                   ("max_value_bytes", max_value_bytes), ("max_bytes", max_bytes),
                                                   ("max_processes", max_processes)) if value is not None}
        self._attach(
            path,
            engine,
            "create" if create and not read_only else "open",
            read_only,
            bool(trust_foreign_owner),
            DEFAULT_CAPACITY if capacity is None else capacity,
            DEFAULT_MAX_KEY_BYTES if max_key_bytes is None else max_key_bytes,
            DEFAULT_MAX_VALUE_BYTES if max_value_bytes is None else max_value_bytes,
            DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
            DEFAULT_MAX_PROCESSES if max_processes is None else max_processes,
            mode,
        )
        if given:
            _check_created_with(self, given)
        _set_codec(self, codec_class)

    @classmethod
    def temporary(cls, *, capacity=None, engine=None, max_key_bytes=None, max_value_bytes=None, max_bytes=None,
                  max_processes=None, codec=None):
        """A new table with no name in /dev/shm, removed when its creator closes it (and
        every copy of it unpickled in the creator's process) or exits.

        It lives in an anonymous memory file (C++ Table::create_anonymous): nothing is left
        in /dev/shm even when the process is killed with SIGKILL, as the kernel frees the
        memory when the last process using it goes. `path` is /proc/<pid>/fd/<n>, through
        which other processes of this user can attach while the creator keeps it open:
        children forked from it, and pickled copies (multiprocessing under spawn or
        forkserver, a Pool). Once the creator has closed it or exited, it can no longer be
        opened (TableNotFoundError); processes attached already keep using it until they
        close it. Parameters are those of Table() for a new table.

        /proc/<pid>/fd/<n> names whatever the creator's descriptor n is now, which its next
        file may reuse: a pickle therefore carries the table's file identity (device,
        inode), and attaching checks it, raising TableNotFoundError ("closed by its
        creator") rather than opening another table or file. A forked child re-opens it
        through the descriptor it inherited, so it keeps the table after the parent closes
        it. In another PID namespace /proc/<pid> is another process: attaching fails
        there. unlink() returns False: there is no name to remove."""
        codec_class = _codec_class(codec)
        self = cls.__new__(cls)
        self._attach(
            b"",
            _checked_engine(default_engine() if engine is None else engine),
            "temporary",
            False,
            False,
            DEFAULT_CAPACITY if capacity is None else capacity,
            DEFAULT_MAX_KEY_BYTES if max_key_bytes is None else max_key_bytes,
            DEFAULT_MAX_VALUE_BYTES if max_value_bytes is None else max_value_bytes,
            DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
            DEFAULT_MAX_PROCESSES if max_processes is None else max_processes,
            DEFAULT_MODE,
        )
        _set_codec(self, codec_class)
        return self

    # -- views -------------------------------------------------------------------------

    def keys(self):
        """A view of the keys (bytes); iterating it walks the table once."""
        return KeysView(self)

    def values(self):
        """A view of the values (bytes); iterating it walks the table once."""
        return _ValuesView(self)

    def items(self):
        """A view of (key, value) pairs; iterating it walks the table once."""
        return _ItemsView(self)

    # -- writes ------------------------------------------------------------------------

    def update(self, other=(), /, **kwds):
        """Store every pair of `other` (a mapping or an iterable of pairs) and of `kwds`.

        Atomic per pair, not as a whole: each pair is one atomic assign, and another
        process may see some pairs stored and not yet others. Crosses into C++ once per
        argument with the GIL released. If one pair fails (too large, table full), the
        pairs before it are stored."""
        if isinstance(other, Mapping):
            self._assign_many(other.items())
        elif hasattr(other, "keys"):
            self._assign_many([(key, other[key]) for key in other.keys()])
        else:
            self._assign_many(other)
        if kwds:
            self._assign_many(kwds.items())

    def setdefault(self, key, default=None):
        """Return the value of `key`; if absent, store `default` first.

        Atomic: one compare_and_set(key, None, default), which either stores `default`
        or reports the value that is there, in one step. Of several processes racing,
        one value wins and every caller returns it."""
        if default is None:
            value = self.get(key)
            if value is None:
                raise TypeError("setdefault() on a shmht.Table needs a default value (None cannot be stored)")
            return value
        applied, seen = self._compare_and_set_seen(key, None, default)
        return _as_bytes(default) if applied else seen  # what a later read returns

    def popitem(self):
        """Remove and return some (key, value) pair; KeyError if the table is empty.

        Atomic: the pair is removed in one step (C++ Table::take_any), so it is exactly
        what this call removed, and of several processes popping at once each pair goes to
        one of them. Amortised O(1): the handle keeps a cursor over the table and resumes
        where the last call stopped, so draining n items costs about n pops plus a walk of
        the table, not a walk per pop. KeyError once a full walk since the last item found
        finds none (an item present for the whole call is found).

        Nearly empty, a pop walks about capacity / items slots to the next item, and on an
        empty table a whole lap (5.7 ms at the default capacity; python/README.md): size a
        queue's capacity near its backlog, and wait after a KeyError rather than poll."""
        item = self._take_any()
        if item is None:
            raise KeyError("popitem(): shmht.Table is empty")
        return item

    def update_value(self, key, fn, default=None):
        """Replace the value of `key` with fn(value) atomically; return what was stored.

        fn receives the current value (bytes), or `default` when the key is absent, and
        returns the new value (bytes or str), or None to erase the key (the return value
        is then None). This is a retry loop over compare_and_set: read the value, call fn,
        store the result only if the key still holds what fn was given, and otherwise
        call fn again with the newer value. So the update applies exactly once, as one
        atomic step, but fn may run more than once: keep it free of side effects.

            t.update_value("hits", lambda v: b"%d" % (int(v) + 1), default=b"0")
        """
        current = self.get(key)
        while True:
            new = fn(default if current is None else current)
            applied, seen = self._compare_and_set_seen(key, current, new)
            if applied:
                return None if new is None else _as_bytes(new)
            current = seen

    def clear(self):
        """Erase every key (one C++ crossing, GIL released). Keys other processes insert
        during the call may survive it."""
        self._erase_all()

    # -- lifetime ----------------------------------------------------------------------

    def unlink(self):
        """Delete the file this handle has open, if its name still names it (same inode);
        return False, deleting nothing, if the name is gone or names another file now.

        Other attached processes are not asked (use shmht.unlink(name) for that check):
        they keep using the removed file, as this handle does until it is closed.
        A temporary table (Table.temporary) has no name: False; it goes when its last
        handle closes."""
        return self._unlink_if_same()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __reduce__(self):
        # spawn / pickling: re-attach by path in the other process, never re-create.
        if self.closed:
            raise ValueError("cannot pickle a closed shmht.Table")
        temporary_file = self._temporary_file()
        arguments = (self.path, self.engine, self.read_only, self.trust_foreign_owner, self.codec)
        return (_reattach, arguments if temporary_file is None else arguments + (temporary_file,))

    def __repr__(self):
        state = "closed" if self.closed else f"engine={self.engine!r}" + (" read_only" if self.read_only else "")
        if self.codec is not None:
            state += f" codec={self.codec!r}"
        return f"<shmht.Table {self.path!r} {state}>"


def _as_bytes(value):
    """The bytes the table stores for a key or value argument."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8") if isinstance(value, str) else memoryview(value).tobytes()


def _reattach(path, engine, read_only=False, trust_foreign_owner=False, codec=None, temporary_file=None):
    """Unpickling: attach to the existing table `path` with `engine`, sharing the
    attachment this process has already for these arguments (so that the copies a pool
    worker receives, one per task, hold one of the table's max_processes entries, not one
    each; closing one copy leaves the others working).

    temporary_file: a Table.temporary's (device, inode). Its path, /proc/<pid>/fd/<n>,
    names whatever the creator's fd <n> is now, so the file is checked: once the creator
    has closed the table, TableNotFoundError, never another table or file."""
    table = Table.__new__(Table)
    table._attach(_path_bytes(path), _checked_engine(engine), "share", bool(read_only), bool(trust_foreign_owner),
                  DEFAULT_CAPACITY, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_BYTES,
                  DEFAULT_MAX_PROCESSES, DEFAULT_MODE, None if temporary_file is None else tuple(temporary_file))
    _set_codec(table, _codec_class(codec))
    return table


from ._codec import _codec_class, _set_codec  # noqa: E402  (needs Table)
from ._compat import close, error, foreach, getval, open, remove, setval  # noqa: E402  (needs Table)
