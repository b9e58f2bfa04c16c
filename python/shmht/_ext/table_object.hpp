// table_object.hpp - shmht._shmht._TableBase, the C type behind shmht.Table.
//
// WHY A HAND-WRITTEN TYPE
//   `t[k]`, `t[k] = v` and `k in t` should cost little more than the table operation.
//   pybind11's dispatcher (argument loaders, overload resolution, casters) adds more than
//   the lookup itself, so the mapping slots (mp_subscript, mp_ass_subscript, sq_contains,
//   mp_length, tp_iter) and the hot methods are plain CPython C-API functions. pybind11
//   builds the module around it (errors, engine functions). shmht.Table (Python) derives
//   from this type and from collections.abc.MutableMapping; CPython copies the C slot
//   pointers into the subclass, so the subclass pays nothing for being Python.
//
// ONE HANDLE, MANY THREADS, MANY COPIES, FORK
//   A shmht::Table handle is used by one thread at a time. Single operations run with the
//   GIL held, which serialises them. Batch calls (get_many, _assign_many, _erase_all)
//   release the GIL: they set the handle's `busy` and hold its `batch_mutex`; any other
//   call that finds `busy` set waits on the mutex with the GIL released.
//   The C++ handle lives in a reference-counted SharedHandle: the copies of a Table
//   unpickled in one process (one per multiprocessing task) share one attachment per
//   (path, engine, read_only, trust_foreign_owner) instead of one each, and `busy` is the
//   handle's, so threads using different copies still take turns on it.
//   What a batch reads with the GIL released it owns: a strong reference to every bytes or
//   str it views in place (BytesBatch), a copy of anything else. The caller's list is no
//   guarantee, since another thread may clear or mutate it meanwhile.
//   A handle must not be used in a child after fork(). A pthread_atfork child handler
//   bumps a generation counter; a call that finds its handle's generation stale re-opens
//   the table by path with the same engine first (sharing with the child's other copies;
//   the registry of shareable handles starts empty in the child), so multiprocessing's
//   fork start method works without the user doing anything. An anonymous table
//   (Table.temporary) is re-opened through the child's own inherited descriptor instead,
//   as the parent's /proc/<pid>/fd/<n> may name another file by then.
//
// A TEMPORARY'S IDENTITY
//   /proc/<pid>/fd/<n> names whatever descriptor n of the creator is now. A temporary's
//   object keeps the (device, inode) of its file, its pickle carries it, and every
//   attach (sharing included) checks it: TableNotFoundError, never another table or file.
//
// SIGNAL HANDLERS
//   A batch runs Python's signal handlers on its own thread (to let Ctrl-C through). A
//   handler using the same handle then raises RuntimeError: waiting for the batch it
//   interrupted would never end.
#pragma once

#include <Python.h>

namespace shmht::python {

// Readies the type, registers the fork handler and adds `_TableBase` to `module`.
// Returns false with a Python error set on failure.
bool add_table_type(PyObject* module);

}  // namespace shmht::python
