// hash.hpp - the key hash every process must compute identically.
//
// XXH3-64 (xxHash 0.8, XXH3_64bits_withSeed) keyed by the table's random seed, stored in
// the header so that every process agrees and an outsider cannot precompute collisions.
// XXH3's output is fixed by its specification since 0.8.0, so processes built against
// different xxHash releases agree too. The home slot comes from the high bits (fastrange)
// and the tag from the low 16 bits (layout/slot.hpp); both are well mixed.
//
// WHY NOT OUR OWN (layout version 3 and earlier used a multiply-fold hash; issue 13,
// bench/hash_bench.cpp). Both spread keys as evenly as random numbers would (chi-square
// per degree of freedom 0.99-1.01 over home slots and tags, random and structured keys).
// But the old hash multiplied each block's second word by a constant the seed did not
// touch: 1000 keys crafted without knowing the seed all got one hash, so anyone who can
// insert keys could fill one home run and make the table report full. XXH3 mixes the seed
// into both operands of every multiply (1000 distinct hashes for the same keys). Its
// speed is in the README (bench/hash_bench).
#pragma once

#include <cstdint>
#include <string_view>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL  // header-only: the hash inlines into the lookup path
#endif
#include <xxhash.h>

namespace shmht {

inline std::uint64_t hash_key(std::string_view key, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(key.data(), key.size(), seed);
}

}  // namespace shmht
