// layout/slot.hpp - the slot array every engine shares.
//
// THE PICTURE
//
//   bucket = one 64-byte cache line
//   +----------+--------+--------+--------+--------+--------+--------+--------+
//   | control  | slot 0 | slot 1 | slot 2 | slot 3 | slot 4 | slot 5 | slot 6 |
//   +----------+--------+--------+--------+--------+--------+--------+--------+
//     8 bytes    8 bytes each
//
//   slot word (64 bits):
//   63            48 47      40 39                                         0
//   +---------------+----------+--------------------------------------------+
//   |   tag (16)    | dist (8) |  record offset / 8 (40)                    |
//   +---------------+----------+--------------------------------------------+
//   tag:    the low 16 bits of the key's hash; a cheap filter before the key compare.
//   dist:   Robin Hood probe distance: this slot's index minus the key's home slot, at
//           most kMaxDist = 254; 255 marks a lock-free operation's descriptor reference.
//   offset: the record's byte offset in the region, divided by 8 (records are 8-aligned,
//           so 40 bits address 8 TiB). Offset 0 is the header, never a record, so the
//           all-zero word means EMPTY.
//
//   control word: bit 63 is MOVED (growth.hpp), the same under every engine; bits 0-62
//   are the engine's. The global lock and striped engines leave them 0; the seqlock keeps
//   a sequence and its owner there; the lock-free engine a version. Switching engines
//   (only possible with no live process attached, and never during a migration) zeroes them.
//   MOVED, set once and never cleared, says that the keys whose home slot lies in this
//   bucket (its HOME GROUP) now live in the next, larger slot array.
//
// SLOTS, NOT BUCKETS, ARE PROBED. Slot s lives in bucket s / 7, lane s % 7. A key's home
// slot is fastrange(hash, home_slot_count) (the high bits of hash * count). Probing is
// linear over slot indices and never wraps: the array has kTailSlots extra slots after
// the last home slot, enough for the longest probe distance the dist field can encode.
// Never wrapping keeps "address order" equal to "probe order", which lets engines that
// lock several buckets take them in address order without deadlock.
//
// ROBIN HOOD INVARIANTS (the same under every engine; `shmht check` verifies them):
//   1. an occupied slot s holds a key whose home slot is s - dist(s);
//   2. if slot s > 0 is occupied with dist(s) > 0, slot s - 1 is occupied and
//      dist(s) <= dist(s - 1) + 1   (keys are ordered by home slot within a run);
//   3. no key appears twice; no record offset appears twice.
// Insertion shifts the run [pos, first empty) right by one, writing from the far end
// backwards; deletion shifts the following run left by one (backward-shift deletion),
// writing front to back. Either way a process that dies part way leaves exactly one
// adjacent duplicate (the same word at s and s + 1 with dist one apart) and nothing
// lost; robin_hood.hpp's repair removes it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmht::layout {

// 128-bit product for fastrange; __extension__ keeps -Wpedantic quiet about the GNU type.
__extension__ using Uint128 = unsigned __int128;

inline constexpr unsigned kSlotsPerBucket = 7;
inline constexpr unsigned kTagBits = 16;
inline constexpr unsigned kDistBits = 8;
inline constexpr unsigned kOffsetBits = 40;
inline constexpr unsigned kOffsetShift = 3;  // records are 8-byte aligned
inline constexpr std::uint64_t kDistMask = (std::uint64_t{1} << kDistBits) - 1;
// A word whose dist field is all ones is not a slot: it names an operation of the
// lock-free engine in progress (engines/lockfree/kcas.hpp). Keys never get that far.
inline constexpr std::uint64_t kDescriptorDist = kDistMask;
inline constexpr std::uint64_t kMaxDist = kDescriptorDist - 1;
inline constexpr std::uint64_t kTailSlots = kMaxDist + 1;
inline constexpr std::uint64_t kEmptySlot = 0;
// Control-word bit 63: this bucket's home group has moved to the next slot array.
inline constexpr std::uint64_t kMovedBit = std::uint64_t{1} << 63;
inline constexpr bool is_moved(std::uint64_t control) noexcept { return (control & kMovedBit) != 0; }
inline constexpr std::uint64_t kMaxRecordOffset = ((std::uint64_t{1} << kOffsetBits) - 1)
                                                  << kOffsetShift;

static_assert(kTagBits + kDistBits + kOffsetBits == 64, "a slot is exactly one 64-bit word");

struct alignas(64) Bucket {
  std::atomic<std::uint64_t> control;
  std::atomic<std::uint64_t> slots[kSlotsPerBucket];
};
static_assert(sizeof(Bucket) == 64, "a bucket is one cache line: a lookup touches one line");
static_assert(alignof(Bucket) == 64, "buckets must not straddle cache lines");
static_assert(offsetof(Bucket, slots) == 8, "the control word comes first");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "slot words are shared between processes: they must not hide a lock");

// A decoded slot word. Encoding and decoding are the only places that know the bit layout.
struct Slot {
  std::uint16_t tag;
  std::uint8_t dist;
  std::uint64_t record_offset;  // bytes from the start of the region

  static constexpr std::uint64_t encode(std::uint16_t tag, std::uint64_t dist,
                                        std::uint64_t record_offset) noexcept {
    return (std::uint64_t{tag} << (kDistBits + kOffsetBits)) | (dist << kOffsetBits) |
           (record_offset >> kOffsetShift);
  }
  static constexpr std::uint16_t tag_of(std::uint64_t word) noexcept {
    return static_cast<std::uint16_t>(word >> (kDistBits + kOffsetBits));
  }
  static constexpr std::uint64_t dist_of(std::uint64_t word) noexcept {
    return (word >> kOffsetBits) & kDistMask;
  }
  static constexpr std::uint64_t offset_of(std::uint64_t word) noexcept {
    return (word & ((std::uint64_t{1} << kOffsetBits) - 1)) << kOffsetShift;
  }
  // The same key one slot further from (or nearer to) its home.
  static constexpr std::uint64_t with_dist(std::uint64_t word, std::uint64_t dist) noexcept {
    return (word & ~(kDistMask << kOffsetBits)) | (dist << kOffsetBits);
  }
};

static_assert(Slot::encode(0xABCD, 7, 0x1000) != kEmptySlot, "a used slot is never EMPTY");
static_assert(Slot::tag_of(Slot::encode(0xABCD, 7, 0x1000)) == 0xABCD);
static_assert(Slot::dist_of(Slot::encode(0xABCD, 7, 0x1000)) == 7);
static_assert(Slot::offset_of(Slot::encode(0xABCD, 7, 0x1000)) == 0x1000);
static_assert(Slot::dist_of(Slot::with_dist(Slot::encode(1, 7, 8), kMaxDist)) == kMaxDist);
static_assert(kMaxDist == 254, "the probe-distance limit users are told about (options.hpp)");

// The slot array as a flat sequence of slot indices over buckets.
class SlotArray {
 public:
  SlotArray() = default;
  SlotArray(Bucket* buckets, std::uint64_t home_slots) noexcept
      : buckets_(buckets), home_slots_(home_slots) {}

  static constexpr std::uint64_t bucket_count_for(std::uint64_t home_slots) noexcept {
    return (home_slots + kTailSlots + kSlotsPerBucket - 1) / kSlotsPerBucket;
  }

  std::uint64_t home_slots() const noexcept { return home_slots_; }
  // Every probe stays below this index (home slots plus the tail).
  std::uint64_t probe_limit() const noexcept { return home_slots_ + kTailSlots; }
  std::uint64_t bucket_count() const noexcept { return bucket_count_for(home_slots_); }

  std::uint64_t home_of(std::uint64_t hash) const noexcept {
    return static_cast<std::uint64_t>((static_cast<Uint128>(hash) * home_slots_) >> 64);
  }
  static std::uint16_t tag_of_hash(std::uint64_t hash) noexcept {
    return static_cast<std::uint16_t>(hash);
  }

  Bucket& bucket(std::uint64_t index) const noexcept { return buckets_[index]; }
  const Bucket* buckets() const noexcept { return buckets_; }
  bool valid() const noexcept { return buckets_ != nullptr; }
  // Buckets that hold home slots: one home group each (the rest hold only tail slots).
  std::uint64_t group_count() const noexcept { return (home_slots_ + kSlotsPerBucket - 1) / kSlotsPerBucket; }
  // The bucket holding a hash's home slot: the first line any probe for it reads.
  Bucket& home_bucket(std::uint64_t hash) const noexcept { return bucket(bucket_of_slot(home_of(hash))); }
  static std::uint64_t bucket_of_slot(std::uint64_t slot) noexcept {
    return slot / kSlotsPerBucket;
  }
  std::atomic<std::uint64_t>& slot(std::uint64_t slot) const noexcept {
    return buckets_[slot / kSlotsPerBucket].slots[slot % kSlotsPerBucket];
  }
  std::uint64_t load(std::uint64_t s) const noexcept {
    return slot(s).load(std::memory_order_relaxed);
  }
  void store(std::uint64_t s, std::uint64_t word) const noexcept {
    slot(s).store(word, std::memory_order_relaxed);
  }

 private:
  Bucket* buckets_ = nullptr;
  std::uint64_t home_slots_ = 0;
};

}  // namespace shmht::layout
