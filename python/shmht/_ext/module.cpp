// module.cpp - the shmht._shmht extension module.
//
// pybind11 builds the module: the exception classes, the engine queries and the file
// functions, which are called rarely and read best as pybind11 lambdas. The table type
// whose slots are on every hot path is plain C-API (table_object.hpp says why).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "errors.hpp"
#include "shmht/engine.hpp"
#include "shmht/table.hpp"
#include "table_object.hpp"

namespace py = pybind11;

namespace {

std::vector<std::string> engine_names(bool built_only) {
  std::vector<std::string> names;
  for (shmht::Engine engine : shmht::kAllEngines) {
    if (!built_only || shmht::engine_is_built(engine)) names.emplace_back(shmht::engine_name(engine));
  }
  return names;
}

}  // namespace

#ifndef SHMHT_VERSION
#error "meson passes SHMHT_VERSION (the project version)"
#endif

PYBIND11_MODULE(_shmht, m) {
  m.doc() = "C++ core of the shmht package; import shmht instead.";
  m.attr("__version__") = SHMHT_VERSION;
  // Each docstring below opens with a text signature ("name(args)\n--\n\n") for
  // inspect.signature, in place of pybind11's typed one, which inspect cannot read.
  py::options options;
  options.disable_function_signatures();
  if (!shmht::python::add_error_classes(m.ptr())) throw py::error_already_set();
  if (!shmht::python::add_table_type(m.ptr())) throw py::error_already_set();

  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const shmht::Error& e) {
      shmht::python::set_python_error(e);
    }
  });

  m.def("engine_names", [] { return engine_names(false); },
        "engine_names()\n--\n\nEvery engine name, built or not: global, striped, seqlock, lockfree.");
  m.def("built_engines", [] { return engine_names(true); },
        "built_engines()\n--\n\nThe engines this build implements, in the order of engine_names().");
  m.def("default_engine_name", [] { return std::string(shmht::engine_name(shmht::kDefaultEngine)); },
        "default_engine_name()\n--\n\n"
        "The engine a new table gets when none is named (shmht::kDefaultEngine, as in C++ and the CLI).");
  m.def("active_engine",
        [](const std::string& name) { return std::string(shmht::engine_name(shmht::Table::active_engine(name))); },
        py::arg("name"),
        "active_engine(name)\n--\n\n"
        "The engine the table `name` (a str or bytes path) was last opened with (what its live users use).");
  m.def(
      "encode_counter",
      [](const py::int_& value) {
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
        if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (overflow != 0) {
          throw shmht::Error(shmht::ErrorCode::kCounterOverflow,
                             "encode_counter: " + py::str(static_cast<const py::handle&>(value)).cast<std::string>() +
                                 " is outside the int64 range [-9223372036854775808, 9223372036854775807] of counters");
        }
        return py::bytes(shmht::encode_counter(v));
      },
      py::arg("value"),
      "encode_counter(value)\n--\n\nThe bytes Table.add stores for `value`: its decimal text (b\"-7\"), as Redis INCR.");
  m.def(
      "counter_value", [](const py::bytes& value) { return shmht::decode_counter(std::string(value)); },
      py::arg("value"),
      "counter_value(value)\n--\n\n"
      "The int a counter value (the decimal text of an int64, as Table.add stores) holds; NotACounterError\n"
      "if it is anything else (b\"+1\", b\"007\", b\" 1\", b\"-0\", past the int64 range).");
  m.def(
      "unlink",
      [](const std::string& name, bool force) { return shmht::Table::remove(name, {.force = force}); },
      py::arg("name"), py::kw_only(), py::arg("force") = false,
      "unlink(name, *, force=False)\n--\n\n"
      "Delete the table file `name` (a str or bytes path); returns False if it did not exist.\n\n"
      "Only a shmht table is removed (any other file raises InvalidArgumentError and stays).\n"
      "While live processes are attached it raises TableInUseError naming their pids, unless\n"
      "force=True; then they keep using the removed file and new openers get a new table.");
}
