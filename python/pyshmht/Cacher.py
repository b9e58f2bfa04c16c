"""pyshmht.Cacher: a process-local write-back cache over a HashTable.

Reads are cached in a local dict; writes stay local until write_back(), which foreach(),
to_dict() and close() call. Values are Python objects, stored serialized.
"""

import marshal

from .HashTable import HashTable


class Cacher:
    """Cacher(name, capacity=0, force_init=False, serializer=marshal)

    Behaves like a dict of objects, except: no iteration (use foreach or to_dict), keys
    are bytes or str, and changes reach the shared table only at write_back() (called by
    foreach, to_dict and close) - except `del`, which erases from the table at once.
    After close(), any use but close() raises ValueError.
    """

    def __init__(self, name, capacity=0, force_init=False, serializer=marshal):
        self.ht = HashTable(name, capacity, force_init, serializer)
        self.d = {}
        self.loads = serializer.loads
        self.dumps = serializer.dumps

    def _cache(self):
        """The local cache; ValueError once closed (not a confusing error about None)."""
        if self.d is None:
            raise ValueError("operation on a closed pyshmht Cacher")
        return self.d

    def __getitem__(self, key):
        d = self._cache()
        if key in d:
            return d[key]
        value = self.loads(self.ht[key])  # KeyError if absent
        d[key] = value
        return value

    def __setitem__(self, key, value):
        self._cache()[key] = value

    def __delitem__(self, key):
        # Erase from both the cache and the table; KeyError only if neither had it
        # (pyshmht raised KeyError for a key that existed only in the table).
        cached = self._cache().pop(key, _MISSING) is not _MISSING
        stored = self.ht.remove(key)
        if not cached and not stored:
            raise KeyError(key)

    def __contains__(self, key):
        """True if the key is cached or in the table (a table hit is cached)."""
        return self.get(key, _MISSING) is not _MISSING

    def __iter__(self):
        # As HashTable: pyshmht's Cacher had no iteration ("no __iter__, please use
        # foreach instead"); say so instead of failing on __getitem__(0).
        raise TypeError("a pyshmht Cacher is not iterable (nor was pyshmht's): use foreach(callback) or to_dict()")

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def update(self, dic):
        self._cache().update(dic)

    def foreach(self, callback):
        self.write_back()
        return self.ht.foreach(callback, unserialize=True)

    def to_dict(self):
        self.write_back()
        return self.ht.to_dict(unserialize=True)

    def write_back(self):
        """Store every cached item in the table (one batch call)."""
        cache = self._cache()
        self.ht.update(cache, serialize=True)

    def close(self):
        """Write the cache back and detach; closing again does nothing. Any other use
        afterwards raises ValueError."""
        if self.d:
            self.write_back()
        self.d = None
        if self.ht is not None:
            self.ht.close()
            self.ht = None

    def __del__(self):
        """Do not rely on this: call write_back() or close() yourself."""
        if getattr(self, "ht", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001  (interpreter shutdown: nothing left to report to)
                pass


_MISSING = object()


def MemCacher(name, capacity=0, force_init=False, serializer=marshal):  # noqa: N802  (pyshmht's name)
    """Cacher('/dev/shm/' + name, ...): a table that lives only in memory."""
    return Cacher("/dev/shm/" + name, capacity, force_init, serializer)
