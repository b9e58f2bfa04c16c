// errors.cpp - see errors.hpp.
#include "errors.hpp"

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace shmht::python {
namespace {

struct ErrorClassSpec {
  ErrorCode code;
  const char* name;      // attribute name in the module
  PyObject** builtin;    // extra built-in base, or nullptr
  const char* doc;
  int os_errno = 0;      // for OSError subclasses that stand for one errno: e.errno
};

// PyExc_* are not constant expressions, hence pointers to them.
const std::array<ErrorClassSpec, 17> kSpecs = {{
    {ErrorCode::kKeyTooLarge, "KeyTooLargeError", &PyExc_ValueError,
     "A key to store is longer than the table's max_key_bytes (the message names both sizes); lookups "
     "and removals of such a key find it absent instead."},
    {ErrorCode::kValueTooLarge, "ValueTooLargeError", &PyExc_ValueError,
     "A value is longer than the table's max_value_bytes (the message names both sizes)."},
    {ErrorCode::kTableFull, "TableFullError", nullptr,
     "No room for a new item, and the table cannot grow: its file would pass max_bytes (the message "
     "names it; create the table with a larger max_bytes), or, rarely, a run of slots near the key's home "
     "is full while growth is impossible. The failing operation changed nothing."},
    {ErrorCode::kNoSpace, "NoSpaceError", &PyExc_OSError,
     "The filesystem holding the table is full (errno ENOSPC); the message names it, its size "
     "and free bytes, and what to do. The failing operation changed nothing.",
     ENOSPC},
    {ErrorCode::kCorrupt, "CorruptTableError", nullptr,
     "The table file fails validation; run `shmht check` on it."},
    {ErrorCode::kVersionMismatch, "VersionMismatchError", nullptr,
     "The table file was written by another layout version of shmht."},
    {ErrorCode::kEngineMismatch, "EngineMismatchError", nullptr,
     "Live processes use the table with another engine; open it with theirs."},
    {ErrorCode::kEngineUnavailable, "EngineUnavailableError", nullptr,
     "The requested engine is not built in this version (see shmht.built_engines())."},
    {ErrorCode::kPermissionDenied, "PermissionDeniedError", &PyExc_PermissionError,
     "The operating system refused access to the table file, or a write went through a read-only handle."},
    {ErrorCode::kNotFound, "TableNotFoundError", &PyExc_FileNotFoundError,
     "No table of that name exists, or the directory of its path does not (the message says which)."},
    {ErrorCode::kAlreadyExists, "TableExistsError", &PyExc_FileExistsError,
     "A table of that name already exists."},
    {ErrorCode::kTooManyProcesses, "TooManyProcessesError", nullptr,
     "Every attachment entry of the table is held by a live handle; the message names the table's "
     "max_processes (create a table with more: Table(..., max_processes=N))."},
    {ErrorCode::kInUse, "TableInUseError", nullptr,
     "Removing a table that live processes are attached to (the message names their pids); "
     "pass force=True to remove it anyway. Also: the table is busy, another process having held "
     "it for seconds while opening, recovering or switching it (a stopped process?); try again."},
    {ErrorCode::kInvalidArgument, "InvalidArgumentError", &PyExc_ValueError,
     "A bad option or argument: a name containing '/', a size or mode outside its range (the message "
     "names the field and the range), reopening a table with a size it was not created with."},
    {ErrorCode::kSystem, "SystemCallError", &PyExc_OSError,
     "An unexpected operating-system error; the message carries errno's text."},
    {ErrorCode::kNotACounter, "NotACounterError", &PyExc_ValueError,
     "Table.add or counter_value met a value that is not the decimal text of an int64 (the message "
     "names the key and shows the value)."},
    {ErrorCode::kCounterOverflow, "CounterOverflowError", &PyExc_OverflowError,
     "Table.add would take a counter past the int64 range, or its delta is outside it; the counter is "
     "unchanged."},
}};

PyObject* g_base = nullptr;                                // shmht.Error
std::array<PyObject*, kSpecs.size()> g_classes{};           // indexed like kSpecs

PyObject* class_for(ErrorCode code) {
  for (std::size_t i = 0; i < kSpecs.size(); ++i) {
    if (kSpecs[i].code == code) return g_classes[i];
  }
  return g_base;
}

}  // namespace

bool add_error_classes(PyObject* module) {
  g_base = PyErr_NewExceptionWithDoc("shmht.Error",
                                     "Base class of every error shmht raises; `code` names the kind "
                                     "(for example 'table_full').",
                                     PyExc_Exception, nullptr);
  if (g_base == nullptr || PyModule_AddObjectRef(module, "Error", g_base) < 0) return false;
  for (std::size_t i = 0; i < kSpecs.size(); ++i) {
    const ErrorClassSpec& spec = kSpecs[i];
    PyObject* bases = spec.builtin ? PyTuple_Pack(2, g_base, *spec.builtin) : PyTuple_Pack(1, g_base);
    if (bases == nullptr) return false;
    const std::string qualified = std::string("shmht.") + spec.name;
    g_classes[i] = PyErr_NewExceptionWithDoc(qualified.c_str(), spec.doc, bases, nullptr);
    Py_DECREF(bases);
    if (g_classes[i] == nullptr || PyModule_AddObjectRef(module, spec.name, g_classes[i]) < 0) return false;
  }
  return true;
}

namespace {

int errno_for(ErrorCode code) {
  for (const ErrorClassSpec& spec : kSpecs) {
    if (spec.code == code) return spec.os_errno;
  }
  return 0;
}

}  // namespace

std::nullptr_t set_python_error(const shmht::Error& error) {
  PyObject* cls = class_for(error.code());
  const int os_errno = errno_for(error.code());
  // A message may quote a path that is not UTF-8 (names are bytes): keep such bytes
  // readable as \xNN instead of failing to make the exception.
  const std::string_view what = error.what();
  PyObject* message = PyUnicode_DecodeUTF8(what.data(), static_cast<Py_ssize_t>(what.size()), "backslashreplace");
  if (message == nullptr) return nullptr;
  // OSError(errno, strerror) sets e.errno; with one argument it stays None.
  PyObject* exc = os_errno != 0 ? PyObject_CallFunction(cls, "iN", os_errno, message)
                                : PyObject_CallFunction(cls, "N", message);
  if (exc == nullptr) return nullptr;  // the constructor's own error is set
  const std::string_view code = error_code_name(error.code());
  PyObject* code_str = PyUnicode_FromStringAndSize(code.data(), static_cast<Py_ssize_t>(code.size()));
  if (code_str != nullptr) {
    PyObject_SetAttrString(exc, "code", code_str);
    Py_DECREF(code_str);
  }
  PyErr_Clear();  // a failed setattr only loses `code`; the exception itself still stands
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
  return nullptr;
}

int set_python_error_int(const shmht::Error& error) {
  set_python_error(error);
  return -1;
}

}  // namespace shmht::python
