// json.hpp - the driver's JSON: nlohmann::json with fields kept in the order they are
// added (the order the result schema documents), std::optional written as the value or
// null, and one way to print a document.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <ostream>

namespace shmht::harness {

using Json = nlohmann::ordered_json;

// One line, compact. Bytes that are not UTF-8 (a truncated error message, a label given
// on the command line) become U+FFFD instead of making the whole document unreadable.
inline void print_json(std::ostream& out, const Json& document) {
  out << document.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
  out.flush();
}

}  // namespace shmht::harness

template <class T>
struct nlohmann::adl_serializer<std::optional<T>> {
  template <class BasicJson>
  static void to_json(BasicJson& json, const std::optional<T>& value) {
    if (value) {
      json = *value;
    } else {
      json = nullptr;
    }
  }
};
