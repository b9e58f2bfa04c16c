// hash.hpp - the key hash every process must compute identically.
//
// 64-bit multiply-fold hash over 8-byte words, keyed by the table's random seed (stored
// in the header, so every process agrees and an outsider cannot precompute collisions).
// The fold (high ^ low half of a 128-bit product) mixes every input bit into the result
// in one multiply; the final round spreads the last word so both the high bits (home
// slot, via fastrange) and the low 16 bits (the tag) are well mixed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace shmht {

namespace hash_detail {
inline constexpr std::uint64_t kMul0 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
inline constexpr std::uint64_t kMul1 = 0xD6E8FEB86659FD93ull;
inline constexpr std::uint64_t kMul2 = 0xA0761D6478BD642Full;

__extension__ using Uint128 = unsigned __int128;

inline std::uint64_t fold_multiply(std::uint64_t a, std::uint64_t b) noexcept {
  const Uint128 product = static_cast<Uint128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}
inline std::uint64_t load_word(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}
}  // namespace hash_detail

inline std::uint64_t hash_key(std::string_view key, std::uint64_t seed) noexcept {
  using namespace hash_detail;
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = seed ^ (n * kMul0);
  for (; n >= 16; n -= 16, p += 16) {
    h = fold_multiply(load_word(p) ^ kMul1 ^ h, load_word(p + 8) ^ kMul2);
  }
  if (n >= 8) {
    h = fold_multiply(load_word(p) ^ kMul1 ^ h, load_word(p + n - 8) ^ kMul2);
  } else if (n > 0) {
    // 1..7 bytes: first, middle and last byte plus the first/last 4 (overlapping) cover all.
    std::uint64_t tail = 0;
    if (n >= 4) {
      std::uint32_t a, b;
      std::memcpy(&a, p, 4);
      std::memcpy(&b, p + n - 4, 4);
      tail = (std::uint64_t{a} << 32) | b;
    } else {
      tail = (std::uint64_t{static_cast<unsigned char>(p[0])} << 16) |
             (std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
             static_cast<unsigned char>(p[n - 1]);
    }
    h = fold_multiply(tail ^ kMul1 ^ h, kMul2);
  }
  return fold_multiply(h ^ kMul0, kMul1 ^ seed);
}

}  // namespace shmht
