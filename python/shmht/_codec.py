"""Value codecs of shmht.Table: Table(..., codec="text" | "pickle").

The table stores bytes; a codec only changes what one handle gives and takes. The bytes
path (codec=None) stays the C type's own slots, untouched: a codec handle is the same
object with its class switched to a subclass that encodes arguments and decodes results
around the same C calls, so `isinstance(t, shmht.Table)` holds and pickling keeps the
codec.
"""

import pickle

from . import Table, _as_bytes

_CODECS = ("text", "pickle")


class _CodecTable(Table):
    """What every codec shares: each method that returns a key or value decodes it, each
    that takes a value encodes it. Subclasses define _encode / _decode (values) and
    _decode_key."""

    __slots__ = ()

    @staticmethod
    def _encode(value):
        return value

    @staticmethod
    def _decode(data):
        return data

    @staticmethod
    def _decode_key(data):
        return data

    def _encode_optional(self, value):
        return None if value is None else self._encode(value)

    def _decode_value_of(self, key, data, afterwards=""):
        """self._decode(data), the value of `key`; an error it raises names the key (a
        table may hold one bad value among many), and says `afterwards` (what became of
        the item)."""
        try:
            return self._decode(data)
        except Exception as error:
            _name_key_in(error, key, afterwards)
            raise

    # -- reads ---------------------------------------------------------------------------

    def __getitem__(self, key):
        return self._decode_value_of(key, super().__getitem__(key))

    def get(self, key, default=None):
        data = super().get(key)
        return default if data is None else self._decode_value_of(key, data)

    def get_many(self, keys, default=None):
        keys = list(keys)
        missing = object()
        return [default if data is missing else self._decode_value_of(key, data)
                for key, data in zip(keys, super().get_many(keys, missing))]

    def __iter__(self):
        return map(self._decode_key, super().__iter__())

    def _values(self):
        return (self._decode_value_of(k, v) for k, v in super()._items())

    def _items(self):
        return ((self._decode_key(k), self._decode_value_of(k, v)) for k, v in super()._items())

    # -- writes --------------------------------------------------------------------------

    def __setitem__(self, key, value):
        super().__setitem__(key, self._encode(value))

    def insert(self, key, value, /):
        return super().insert(key, self._encode(value))

    def update(self, other=(), /, **kwds):
        pairs = other.items() if hasattr(other, "items") else (
            [(key, other[key]) for key in other.keys()] if hasattr(other, "keys") else other)
        self._assign_many([(key, self._encode(value)) for key, value in pairs])
        if kwds:
            self._assign_many([(key, self._encode(value)) for key, value in kwds.items()])

    _missing = object()

    def pop(self, key, default=_missing):
        data = super().pop(key, None)
        if data is not None:
            return self._decode_removed(key, data)
        if default is _CodecTable._missing:
            raise KeyError(key)
        return default

    def popitem(self):
        key, data = super().popitem()
        try:
            decoded_key = self._decode_key(key)
        except Exception as error:
            put_back = self._put_back(key, data)
            _name_key_in(error, key, "the item was put back in the table" if put_back else
                         "it could not be put back (the key holds a newer value)", what="key")
            raise
        return decoded_key, self._decode_removed(key, data)

    def _decode_removed(self, key, data):
        """Decode the value of `key` that pop or popitem has just removed (atomically, as
        bytes). If it cannot be decoded, the item must not be lost: it is put back, unless
        the key holds a value again by then (another process stored one), in which case
        the raw key and value ride on the exception as shmht_key and shmht_value."""
        try:
            return self._decode(data)
        except Exception as error:
            if self._put_back(key, data):
                _name_key_in(error, key, "the item was put back in the table")
            else:
                error.shmht_key, error.shmht_value = _as_bytes(key), data
                _name_key_in(error, key, "it could not be put back (the key holds a newer value): its bytes are "
                                         "this exception's shmht_key and shmht_value")
            raise

    def _put_back(self, key, data):
        """Store the raw `data` under `key` if the key is absent; True if it was."""
        applied, _ = self._compare_and_set_seen(key, None, data)
        return applied

    def setdefault(self, key, default=None):
        if default is None:
            value = self.get(key)
            if value is None:
                raise TypeError("setdefault() on a shmht.Table needs a default value (None cannot be stored)")
            return value
        applied, seen = self._compare_and_set_seen(key, None, self._encode(default))
        return default if applied else self._decode(seen)

    def compare_and_set(self, key, expected, desired, /):
        return super().compare_and_set(key, self._encode_optional(expected), self._encode_optional(desired))

    def update_value(self, key, fn, default=None):
        current = super().get(key)
        while True:
            new = fn(default if current is None else self._decode(current))
            applied, seen = self._compare_and_set_seen(key, current, self._encode_optional(new))
            if applied:
                return new
            current = seen


class _TextTable(_CodecTable):
    """codec="text": keys and values come back as str (UTF-8), as redis-py's
    decode_responses. str or bytes go in, as for every Table."""

    __slots__ = ()
    codec = "text"

    @staticmethod
    def _encode(value):
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            return value
        raise TypeError(f"shmht.Table(codec='text') values must be str, bytes, bytearray or memoryview, not "
                        f"{type(value).__name__} (codec='pickle' stores any picklable object)")

    @staticmethod
    def _decode(data):
        return data.decode("utf-8")

    _decode_key = _decode


class _PickleTable(_CodecTable):
    """codec="pickle": values are any picklable object; keys are bytes as usual."""

    __slots__ = ()
    codec = "pickle"

    @staticmethod
    def _encode(value):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def _decode(data):
        return pickle.loads(data)


_CLASSES = {None: Table, "text": _TextTable, "pickle": _PickleTable}


def _name_key_in(error, key, afterwards="", what="value of key"):
    """Make the message of `error`, raised decoding the value of `key`, name the key (and
    say `afterwards`, what became of the item): UnicodeDecodeError's text is made from its
    reason; an exception with one str argument (UnpicklingError) from it; any other gets
    a note (shown under its traceback)."""
    where = f" (the {what} {_as_bytes(key)!r}" + (f"; {afterwards})" if afterwards else ")")
    if isinstance(error, UnicodeDecodeError):
        error.reason += where
    elif len(error.args) == 1 and isinstance(error.args[0], str):
        error.args = (error.args[0] + where,)
    else:
        error.add_note("shmht:" + where[1:-1])


def _codec_class(codec):
    """The Table subclass for `codec`; ValueError naming the codecs otherwise."""
    try:
        return _CLASSES[codec]
    except (KeyError, TypeError):
        raise ValueError(f"unknown codec {codec!r}; the codecs are None (bytes), "
                         f"{', '.join(map(repr, _CODECS))}") from None


def _set_codec(table, codec_class):
    """Switch `table` (a Table) to the codec `codec_class` (same layout, so allowed)."""
    if codec_class is not Table and type(table) is Table:
        table.__class__ = codec_class
