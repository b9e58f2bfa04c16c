// seed_layout.hpp - the file layout of pyshmht, the project shmht descends from, as a
// BASELINE to measure against. Never an engine: nothing here is safe to share.
//
// Reproduced from pyshmht's hashtable.c / hashtable.h / shmht.c (felix021/pyshmht,
// gatopeich/pyshmht; read for this file, no code copied):
//
//   offset 0        header (1,024 bytes): magic, ref_cnt, orig_capacity, capacity
//                   (= slot count), size (the item counter), flag_offset, bucket_offset
//   offset 1024     one flag byte per slot (empty 0, used 1, removed 2), the flag array
//                   padded to a multiple of 4: (slots / 4 + 1) * 4 bytes
//   bucket_offset   slots x 1,280-byte buckets:
//                     +0     key   { u32 size; char bytes[252] }    (256 bytes)
//                     +256   value { u32 size; char bytes[1020] }   (1,024 bytes)
//
// The slot count is NOT simply "a prime above 2 x capacity": it is the first entry of a
// fixed table of primes (each about twice the last) that exceeds 2 x capacity. For the
// seed test's capacity of 333,333 that is 786,433 slots, and the file is
//   1,024 + 786,436 x (1 + 1,280) = 1,007,425,540 bytes  (961 MiB, the README's "961M").
// Bucket space is reserved for the padded slot count (786,436), flags likewise.
// Inserts fail once size > 0.65 x slots (checked before the increment, so the table
// can hold floor(0.65 x slots) + 1 items). Hashing is djb2 (h * 33 + c, over signed
// chars, as pyshmht's `char c`), reduced mod the slot count; probing is quadratic by
// triangular numbers: i, i+1, i+3, i+6, ... (mod slots).
//
// Everything here is constexpr and pure so the tests can pin it (seed_layout_test.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace shmht::harness::seed {

inline constexpr std::uint64_t kHeaderBytes = 1024;
inline constexpr std::uint64_t kBucketBytes = 1280;   // pyshmht's bucket_size
inline constexpr std::uint64_t kKeyRegionBytes = 256;  // pyshmht's max_key_size
inline constexpr std::uint64_t kValueRegionBytes = kBucketBytes - kKeyRegionBytes;
inline constexpr std::uint64_t kLengthBytes = 4;       // the u32 in front of key and value
inline constexpr double kMaxLoadFactor = 0.65;

static_assert(kKeyRegionBytes + kValueRegionBytes == kBucketBytes, "a bucket is a key region then a value region");
static_assert(kBucketBytes % 4 == 0 && kKeyRegionBytes % 4 == 0,
              "the u32 lengths sit at the start of each region and must stay 4-byte aligned");

enum class Flag : std::uint8_t { kEmpty = 0, kUsed = 1, kRemoved = 2 };

// pyshmht's prime table, in its order; the last one bounds the capacity it can hold.
inline constexpr std::array<std::uint64_t, 26> kPrimes = {
    53,        97,        193,       389,       769,       1543,      3079,       6151,       12289,
    24593,     49157,     98317,     196613,    393241,    786433,    1572869,    3145739,    6291469,
    12582917,  25165843,  50331653,  100663319, 201326611, 402653189, 805306457, 1610612741};

// The slot count for a requested capacity: the first table prime above 2 x capacity, or
// 0 when the table has none (pyshmht then fails to open).
constexpr std::uint64_t slot_count(std::uint64_t capacity) {
  for (std::uint64_t p : kPrimes) {
    if (p > 2 * capacity) return p;
  }
  return 0;
}

// Slot count rounded up as pyshmht rounds it for alignment: (slots / 4 + 1) * 4.
constexpr std::uint64_t padded_slots(std::uint64_t slots) { return (slots / 4 + 1) * 4; }

// The geometry of one file: pyshmht's fixed buckets, or (for the ablation's
// "right-sized slots" step) buckets sized to the workload's longest key and value.
struct Geometry {
  std::uint64_t slots = 0;           // hash modulus
  std::uint64_t key_region = kKeyRegionBytes;
  std::uint64_t value_region = kValueRegionBytes;

  constexpr std::uint64_t bucket_bytes() const { return key_region + value_region; }
  constexpr std::uint64_t flag_offset() const { return kHeaderBytes; }
  constexpr std::uint64_t bucket_offset() const { return flag_offset() + padded_slots(slots); }
  constexpr std::uint64_t file_bytes() const { return bucket_offset() + bucket_bytes() * padded_slots(slots); }
  // Inserts fail when size > max_load_factor x slots (before the increment).
  constexpr bool over_loaded(std::uint64_t size) const {
    return static_cast<double>(slots) * kMaxLoadFactor < static_cast<double>(size);
  }
  constexpr std::uint64_t max_key_bytes() const { return key_region - kLengthBytes; }
  constexpr std::uint64_t max_value_bytes() const { return value_region - kLengthBytes; }
};

constexpr Geometry fixed_geometry(std::uint64_t capacity) { return Geometry{slot_count(capacity)}; }

// Regions just big enough for the longest key and value (+ their u32 length, rounded to
// 4 bytes so the lengths stay aligned); the rest of pyshmht's design is unchanged.
constexpr Geometry right_sized_geometry(std::uint64_t capacity, std::uint64_t key_bytes, std::uint64_t value_bytes) {
  auto region = [](std::uint64_t bytes) { return (kLengthBytes + bytes + 3) / 4 * 4; };
  return Geometry{slot_count(capacity), region(key_bytes), region(value_bytes)};
}

// The seed test's table: capacity 333,333 gives the README's 961 MiB file.
static_assert(slot_count(333'333) == 786'433, "the seed test's slot count");
static_assert(fixed_geometry(333'333).file_bytes() == 1'007'425'540, "the seed test's file: 961 MiB");

// djb2 as pyshmht computes it: an unsigned long accumulator fed signed chars, truncated
// to unsigned int at the end.
constexpr std::uint32_t djb2(std::string_view bytes) {
  std::uint64_t hash = 5381;
  for (char c : bytes) hash = (hash << 5) + hash + static_cast<std::uint64_t>(static_cast<std::int64_t>(c));
  return static_cast<std::uint32_t>(hash);
}

static_assert(djb2("") == 5381 && djb2("a") == 5381 * 33 + 'a', "h * 33 + c from 5381");

// The probe sequence from `home`: home, home+1, home+3, home+6, ... (mod slots).
class ProbeSequence {
 public:
  constexpr ProbeSequence(std::uint64_t home, std::uint64_t slots) : slot_(home), slots_(slots) {}
  constexpr std::uint64_t slot() const { return slot_; }
  constexpr void next() {
    slot_ = (slot_ + step_) % slots_;
    ++step_;
  }

 private:
  std::uint64_t slot_, slots_, step_ = 1;
};

}  // namespace shmht::harness::seed
