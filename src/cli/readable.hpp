// cli/readable.hpp - numbers as a person reads them: "1 item" / "2 items", and byte
// counts with a unit ("64 B", "1.8 MiB") instead of 1.76538e+06.
//
// Units are binary (1 KiB = 1024 B), as ls -h and du -h count; below 1 KiB a count is
// exact. The --json outputs keep exact integers: only the text outputs round.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>

namespace shmht::cli {

// "1 item", "2 items"; `plural` for a noun that does not just take an "s".
inline std::string count_of(std::uint64_t n, std::string_view noun, std::string_view plural = {}) {
  std::string text = std::to_string(n) + " ";
  if (n == 1) return text.append(noun);
  return plural.empty() ? text.append(noun).append("s") : text.append(plural);
}

// "0 B", "1023 B", "1.0 KiB", "11.3 MiB", "2.0 GiB": one decimal from 1 KiB up.
inline std::string bytes_text(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) {
    char exact[32];
    std::snprintf(exact, sizeof exact, "%.0f B", bytes < 0 ? 0.0 : bytes);
    return exact;
  }
  std::size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  // 1023.96 KiB would print as "1024.0 KiB": carry it into the next unit.
  if (bytes >= 1023.95 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  char text[48];
  std::snprintf(text, sizeof text, "%.1f %s", bytes, kUnits[unit]);
  return text;
}

template <std::unsigned_integral T>
std::string bytes_text(T bytes) {
  return bytes_text(static_cast<double>(bytes));
}

// A ratio such as a load factor: three decimals ("0.003", "1.250"), or six below 0.001
// so that a nearly empty table does not read as empty ("0.000034"); never e-notation.
inline std::string ratio_text(double ratio) {
  char text[64];
  std::snprintf(text, sizeof text, ratio > 0 && ratio < 0.001 ? "%.6f" : "%.3f", ratio);
  return text;
}

}  // namespace shmht::cli
