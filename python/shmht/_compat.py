"""pyshmht's module-level API over shmht.Table, so pyshmht programs run unchanged.

    h = shmht.open("/dev/shm/cache", 100000, 1)   # int handle
    shmht.setval(h, "k", "v")
    shmht.getval(h, "k")                          # b'v'
    shmht.close(h)

Semantics follow pyshmht (positional arguments; `capacity` 0 attaches to an existing
table and must otherwise match it; `force_init` re-creates; `getval` returns bytes or
None; `remove` returns a bool; failures raise `shmht.error`). Every deliberate
difference is listed in python/COMPATIBILITY.md.
"""

import itertools
import threading

from ._shmht import Error, InvalidArgumentError, TableNotFoundError

#: pyshmht's exception. It is shmht.Error, so it also catches every shmht error class.
error = Error

# Handles are small ints, as in pyshmht; they are never reused within a process.
_tables = {}
_next_handle = itertools.count()
_tables_lock = threading.Lock()


def _table(handle):
    try:
        return _tables[handle]
    except (KeyError, TypeError):
        raise error(f"invalid ht id: ({handle!r})") from None


def open(name, capacity=0, force_init=0):  # noqa: A001  (pyshmht's name)
    """Attach to (or create) the table `name` and return an int handle.

    capacity 0 attaches to an existing table (error if there is none); a non-zero
    capacity creates the table if needed and must equal an existing table's capacity.
    force_init true deletes any existing table of that name and creates a new, empty one
    with `capacity` (other processes still attached keep the old one)."""
    from . import Table, _resolve_engine, unlink  # late: shmht/__init__ imports this module

    capacity = int(capacity)
    if force_init:
        if capacity <= 0:
            raise error("please specify 'capacity' when you try to create a shmht")
        unlink(name)
        table = Table(name, capacity=capacity, engine=_resolve_engine(name, None))
    elif capacity == 0:
        try:
            table = Table(name, create=False)
        except TableNotFoundError:
            raise error(f"{name}: no such table; please specify 'capacity' when you try to create a shmht") from None
    else:
        try:
            table = Table(name, capacity=capacity)
        except InvalidArgumentError as e:
            if getattr(e, "_mismatched_field", None) != "capacity":
                raise
            # pyshmht refused another capacity too, pointing at its own arguments.
            hint = InvalidArgumentError(f"{e}; with shmht.open, pass force_init=1 to re-create it or capacity=0 "
                                        "to attach to it")
            hint.code = e.code
            raise hint from None
    with _tables_lock:
        handle = next(_next_handle)
        _tables[handle] = table
    return handle


def close(handle):
    """Detach from the table behind `handle`; returns True. The handle becomes invalid."""
    with _tables_lock:
        table = _tables.pop(handle, None) if isinstance(handle, int) else None
    if table is None:
        raise error(f"invalid ht id: ({handle!r})")
    table.close()
    return True


def getval(handle, key):
    """The value of `key` as bytes, or None."""
    return _table(handle).get(key)


def setval(handle, key, value):
    """Store `value` under `key` (insert or overwrite); returns True."""
    _table(handle)[key] = value
    return True


def remove(handle, key):
    """Erase `key`; True if it was present, False otherwise."""
    return _table(handle).discard(key)


def foreach(handle, callback):
    """Call callback(key, value) (both bytes) for every item; returns None.

    The items come from one walk of the table, taken before the first call, so the
    callback may modify the table. An exception from the callback stops the loop and
    propagates."""
    if not callable(callback):
        raise TypeError("parameter must be callable")
    for key, value in _table(handle)._items():
        callback(key, value)
