// json_writer.hpp - a minimal streaming JSON writer for the driver's one result object.
//
//   JsonWriter j(std::cout);
//   j.begin_object(); j.field("ops", 42); j.key("workers"); j.begin_array(); ... j.end_object();
//
// Commas are inserted automatically; non-finite doubles are written as null.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

namespace shmht::harness {

class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& out) : out_(out) {}

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }

  void key(std::string_view name) {
    separate();
    string(name);
    out_ << ':';
    after_key_ = true;
  }

  void value(std::string_view s) { separate(); string(s); }
  void value(const char* s) { value(std::string_view(s)); }
  void value(bool b) { separate(); out_ << (b ? "true" : "false"); }
  void value(double d) {
    separate();
    if (!std::isfinite(d)) {
      out_ << "null";
      return;
    }
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", d);
    out_ << buffer;
  }
  template <class Int>
    requires std::is_integral_v<Int>
  void value(Int i) { separate(); out_ << +i; }
  template <class T>
  void value(const std::optional<T>& v) {
    if (v) {
      value(*v);
    } else {
      null();
    }
  }
  void null() { separate(); out_ << "null"; }

  template <class T>
  void field(std::string_view name, const T& v) {
    key(name);
    value(v);
  }

 private:
  void open(char c) {
    separate();
    out_ << c;
    first_.push_back(true);
  }
  void close(char c) {
    out_ << c;
    first_.pop_back();
  }
  // Writes the comma before a value or key unless it opens its container or follows a key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ << ',';
    first_.back() = false;
  }
  void string(std::string_view s) {
    out_ << '"';
    for (char c : s) {
      switch (c) {
        case '"': out_ << "\\\""; break;
        case '\\': out_ << "\\\\"; break;
        case '\n': out_ << "\\n"; break;
        case '\t': out_ << "\\t"; break;
        case '\r': out_ << "\\r"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
            out_ << buffer;
          } else {
            out_ << c;
          }
      }
    }
    out_ << '"';
  }

  std::ostream& out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace shmht::harness
