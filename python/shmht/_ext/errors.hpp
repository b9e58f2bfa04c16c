// errors.hpp - the Python exception classes of shmht, and the one place C++ errors become
// Python errors.
//
// Every shmht::ErrorCode has a class, all deriving from shmht.Error; where Python has a
// built-in that callers already catch for the same situation, the class derives from it
// too (a too-large key is a ValueError, a missing table is a FileNotFoundError...). The C++
// message is kept as the exception's text, and `code` holds error_code_name().
#pragma once

#include <Python.h>

#include "shmht/error.hpp"

namespace shmht::python {

// Creates the classes and adds them to `module` (under their Python names). Returns false
// with a Python error set on failure.
bool add_error_classes(PyObject* module);

// Sets the Python error matching `error` and returns nullptr, so callers can write
// `catch (const shmht::Error& e) { return set_python_error(e); }`.
std::nullptr_t set_python_error(const shmht::Error& error);

// The same for an int-returning slot (returns -1).
int set_python_error_int(const shmht::Error& error);

}  // namespace shmht::python
