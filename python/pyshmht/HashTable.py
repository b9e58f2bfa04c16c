"""pyshmht.HashTable: a thin object over shmht's pyshmht-style functions.

Keys are bytes or str (stored as UTF-8); raw values come back as bytes. getobj/setobj
(and the serialize/unserialize flags) pass values through the serializer (marshal by
default).
"""

import marshal

import shmht


class HashTable:
    """HashTable(name, capacity=0, force_init=False, serializer=marshal)

    name        the table: an absolute path (pyshmht's usual form, e.g. '/dev/shm/x') or a
                bare name, which means /dev/shm/<name>
    capacity    0 to attach to an existing table; otherwise it is created if missing and
                must equal an existing table's capacity
    force_init  re-create the table empty
    serializer  any object with loads/dumps (marshal, pickle, json...)
    """

    def __init__(self, name, capacity=0, force_init=False, serializer=marshal):
        self.fd = shmht.open(name, capacity, 1 if force_init else 0)
        self.loads = serializer.loads
        self.dumps = serializer.dumps

    def close(self):
        shmht.close(self.fd)

    def get(self, key, default=None):
        value = shmht.getval(self.fd, key)
        return default if value is None else value

    def set(self, key, value):
        return shmht.setval(self.fd, key, value)

    def remove(self, key):
        return shmht.remove(self.fd, key)

    def foreach(self, callback, unserialize=False):
        if unserialize:
            loads = self.loads

            def call_with_object(key, value):
                return callback(key, loads(value))

            return shmht.foreach(self.fd, call_with_object)
        return shmht.foreach(self.fd, callback)

    def getobj(self, key, default=None):
        value = shmht.getval(self.fd, key)
        return default if value is None else self.loads(value)

    def setobj(self, key, value):
        return self.set(key, self.dumps(value))

    def __getitem__(self, key):
        value = shmht.getval(self.fd, key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        shmht.setval(self.fd, key, value)

    def __delitem__(self, key):
        if not shmht.remove(self.fd, key):
            raise KeyError(key)

    def __contains__(self, key):
        return key in shmht._compat._table(self.fd)

    def __iter__(self):
        # Without this, Python would iterate through __getitem__(0), (1), ... and fail on
        # the int key: pyshmht had no iteration either, so say what to use instead.
        raise TypeError("a pyshmht HashTable is not iterable (nor was pyshmht's): use foreach(callback) or to_dict(), "
                        "or shmht.Table, which is")

    def to_dict(self, unserialize=False):
        result = {}

        def collect(key, value):
            result[key] = value

        self.foreach(collect, unserialize)
        return result

    def update(self, d, serialize=False):
        """Store every item of the mapping `d` (values serialized if `serialize`), in one
        batch call."""
        dumps = self.dumps
        pairs = [(key, dumps(d[key]) if serialize else d[key]) for key in d]
        shmht._compat._table(self.fd).update(pairs)
