// cli/number_option.hpp - strict number options for CLI11 parsers (shmht, shmht-driver).
//
// CLI11 2.1 converts an unsigned option with strtoull(text, base 0): "-5" wraps to
// 2^64 - 5, "010" is octal and "0x10" hex. These options take digits in one base only
// (decimal unless told), no sign, nothing after the number and no overflow; a floating
// option takes a finite non-negative number. A bad value fails the parse with a message
// that names the flag and the text it got. A table-creation option also checks its
// shmht::OptionRange (add_create_option), so a value never wraps around on its way to
// CreateOptions and the message names the allowed range.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <limits>
#include <type_traits>

#include "shmht/options.hpp"

namespace shmht::cli {

// `text` as a Number, or nullopt if it is not exactly one (see above).
template <class Number>
std::optional<Number> parse_number(std::string_view text, int base = 10) {
  Number value{};
  const char* end = text.data() + text.size();
  std::from_chars_result result{};
  if constexpr (std::is_floating_point_v<Number>) {
    result = std::from_chars(text.data(), end, value);
  } else {
    result = std::from_chars(text.data(), end, value, base);
  }
  if (text.empty() || result.ec != std::errc() || result.ptr != end) return std::nullopt;
  if constexpr (std::is_floating_point_v<Number>) {
    if (!std::isfinite(value) || value < 0) return std::nullopt;
  } else if constexpr (std::is_signed_v<Number>) {
    if (value < 0) return std::nullopt;
  }
  return value;
}

// Adds option `flag` ("--capacity") that stores a number in `target` when given; the
// help shows `target`'s value at this call as the default.
template <class Number>
CLI::Option* add_number_option(CLI::App& app, const std::string& flag, Number& target, const std::string& description,
                               int base = 10) {
  std::ostringstream shown;
  if (base == 8) shown << std::oct;
  shown << +target;
  const std::string expected = std::is_floating_point_v<Number> ? "a non-negative number"
                               : base == 8                      ? "an octal number"
                                                                : "a non-negative whole number";
  return app
      .add_option_function<std::string>(
          flag,
          [&target, flag, base, expected](const std::string& text) {
            const std::optional<Number> value = parse_number<Number>(text, base);
            if (!value) throw CLI::ValidationError(flag, "expects " + expected + ", got '" + text + "'");
            target = *value;
          },
          description)
      ->type_name(base == 8 ? "OCTAL" : std::is_floating_point_v<Number> ? "X" : "N")
      ->default_str(shown.str());
}

// Adds option `flag` for the CreateOptions member `target`, whose allowed values are
// `range` (options.hpp): "--max-key-bytes 4294967301" fails the parse with "--max-key-bytes:
// max_key_bytes must be between 1 and 67108856; got 4294967301" instead of wrapping to 5.
template <class Number>
CLI::Option* add_create_option(CLI::App& app, const std::string& flag, Number& target, const std::string& description,
                               const OptionRange& range) {
  static_assert(std::is_unsigned_v<Number>);
  if (range.max > std::numeric_limits<Number>::max()) throw std::logic_error(flag + ": its range does not fit its type");
  std::ostringstream shown;
  if (range.base == 8) shown << std::oct << std::showbase;
  shown << +target;
  return app
      .add_option_function<std::string>(
          flag,
          [&target, flag, range](const std::string& text) {
            const std::optional<std::uint64_t> value = parse_number<std::uint64_t>(text, range.base);
            if (!value || !range.contains(*value)) throw CLI::ValidationError(flag, out_of_range_message(range, text));
            target = static_cast<Number>(*value);
          },
          description + " (" + option_value_text(range, range.min) + ".." + option_value_text(range, range.max) + ")")
      ->type_name(range.base == 8 ? "OCTAL" : "N")
      ->default_str(shown.str());
}

}  // namespace shmht::cli
