// batch_prefetch.hpp - overlapping the cache misses of many lookups (Table::get_many).
//
// A lookup is two dependent cache misses: the key's home bucket, then the record its
// slot names. One lookup at a time, a core waits for each in turn; issued for many keys
// before any result is needed, the misses overlap, up to the number a core keeps in
// flight (about ten). MICA, Cuckoo++ and DRAMHiT batch lookups this way. A batch here
// goes in three passes over its keys:
//   1. prefetch every key's home bucket line;
//   2. for every key, read the slot words of its home bucket (those lines are arriving)
//      and prefetch the record of each slot whose tag matches the key's;
//   3. run the engine's own lookup for each key (Engine::lookup_batch), which now finds
//      its lines in cache and takes its locks or validates exactly as a single get does.
// Passes 1 and 2 decide nothing and store nothing: they read slot words with relaxed
// atomic loads, and a torn, stale or damaged word only prefetches a useless line (an
// offset outside the mapping is not even prefetched). Correctness is pass 3's alone.
#pragma once

#include <cstdint>
#include <span>

#include "engines/engine.hpp"

namespace shmht::batch {

// Keys per batch: enough to cover a core's outstanding misses twice over, few enough
// that the lines of pass 1 are still in L1/L2 when pass 3 reaches them (and that the
// global engine, which locks once per batch, holds its lock briefly).
inline constexpr std::size_t kKeysPerBatch = 16;

// The 64-byte lines a record's first 64 bytes may span: a record is 16-aligned but may
// cross a line (its header, key and the start of its value are what a lookup reads).
inline void prefetch_record(const TableContext& ctx, std::uint64_t slot_word) {
  const std::uint64_t offset = layout::Slot::offset_of(slot_word);
  if (!ctx.region().contains(offset, 64)) return;
  const std::byte* record = ctx.region().at(offset);
  __builtin_prefetch(record, 0, 3);
  __builtin_prefetch(record + 63, 0, 3);
}

inline void prefetch_home_buckets(const TableContext& ctx, std::span<const HashedKey> keys) {
  const layout::SlotArray& slots = ctx.slots();
  for (const HashedKey& key : keys) {
    __builtin_prefetch(&slots.bucket(layout::SlotArray::bucket_of_slot(slots.home_of(key.hash))), 0, 3);
  }
}

inline void prefetch_matching_records(const TableContext& ctx, std::span<const HashedKey> keys) {
  const layout::SlotArray& slots = ctx.slots();
  for (const HashedKey& key : keys) {
    const std::uint64_t home = slots.home_of(key.hash);
    const std::uint16_t tag = layout::SlotArray::tag_of_hash(key.hash);
    // The rest of the home bucket: where the key is, when its run starts at home.
    const std::uint64_t bucket_end = (layout::SlotArray::bucket_of_slot(home) + 1) * layout::kSlotsPerBucket;
    for (std::uint64_t s = home; s < bucket_end && s < slots.probe_limit(); ++s) {
      const std::uint64_t word = slots.load(s);
      if (word == layout::kEmptySlot) break;
      if (layout::Slot::tag_of(word) == tag) prefetch_record(ctx, word);
    }
  }
}

}  // namespace shmht::batch
