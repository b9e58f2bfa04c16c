"""Drop-in replacement for the pyshmht package, built on shmht.

    from pyshmht import HashTable, Cacher, MemCacher

See python/COMPATIBILITY.md for every deliberate difference from pyshmht.
"""

from .Cacher import Cacher, MemCacher
from .HashTable import HashTable

__all__ = ["HashTable", "Cacher", "MemCacher"]
