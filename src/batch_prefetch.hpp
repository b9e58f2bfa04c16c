// batch_prefetch.hpp - overlapping the cache misses of many lookups (Table::get_many).
//
// A lookup is two dependent cache misses: the key's home bucket, then the record its
// slot names (three when its probe runs on into the next bucket, which a third of the
// keys of a full table do). One lookup at a time, a core waits for each in turn; issued
// for many keys before any result is needed, the misses overlap, up to the number a core
// keeps in flight (about ten: bench/miss_parallelism). MICA, Cuckoo++ and DRAMHiT batch
// lookups this way. A key needs 4-5 lines (its bytes, one or two bucket lines, one or
// two record lines), so at best a core answers two or three keys per miss latency. Each batch
// goes through these steps, each a batch ahead of the next (LookupPipeline, table.cpp,
// runs them, one round per batch):
//   1. request every key's bytes, then hash the keys and request the bucket lines their
//      probes are expected to read (the home bucket, and the next when home is late in it);
//   2. for every key, read those slot words (requested a round ago) and request the
//      record of the slot whose tag matches the key's;
//   3. run the engine's own lookup for each key (Engine::lookup_batch), which now finds
//      its lines in cache and takes its locks or validates exactly as a single get does.
// Steps 1 and 2 decide nothing and store nothing: they read slot words with relaxed
// atomic loads, and a torn, stale or damaged word only prefetches a useless line (an
// offset outside the mapping is not even prefetched). Correctness is step 3's alone.
#pragma once

#include <cstdint>
#include <span>

#include "engines/engine.hpp"

namespace shmht::batch {

// Keys per batch: enough to cover a core's outstanding misses twice over, few enough
// that the lines of step 1 are still in L1/L2 when step 3 reaches them (and that the
// global engine, which locks once per batch, holds its lock briefly). 8 and 32 measured
// no better on the development VM.
inline constexpr std::size_t kKeysPerBatch = 16;

inline void prefetch_probed_buckets(const TableContext& ctx, std::span<const HashedKey> keys) {
  for (const HashedKey& key : keys) ctx.prefetch_probed_buckets(key.hash);
}

// Walks each key's probe, as a lookup would (stopping at an empty slot or at an entry
// nearer its home than the key would be), over the slots prefetch_probed_buckets
// requested (TableContext::expected_probe_end), and requests the record of the first
// slot whose tag matches the key's.
inline void prefetch_matching_records(const TableContext& ctx, std::span<const HashedKey> keys) {
  const layout::SlotArray& slots = ctx.slots();
  for (const HashedKey& key : keys) {
    const std::uint64_t home = slots.home_of(key.hash);
    const std::uint16_t tag = layout::SlotArray::tag_of_hash(key.hash);
    const std::uint64_t end = ctx.expected_probe_end(home);
    for (std::uint64_t s = home, d = 0; s < end; ++s, ++d) {
      const std::uint64_t word = slots.load(s);
      if (word == layout::kEmptySlot || layout::Slot::dist_of(word) < d) break;
      if (layout::Slot::tag_of(word) == tag) {
        ctx.prefetch_record(word, key.bytes.size());
        break;  // a second slot with the key's 16-bit tag is rare: not worth a mispredicted branch per slot
      }
    }
  }
}

// Iteration (Table::for_each) reads the records of a range of slots in slot order, which
// is hash order: each record is a miss of its own in the arena. Requesting them all
// before the engine copies the range lets those misses overlap; like the steps above,
// this only reads slot words and decides nothing. The key's length is not known here:
// each record's first line or two (header, a short key, the start of its value).
inline void prefetch_records_in(const TableContext& ctx, std::uint64_t begin, std::uint64_t end) {
  const layout::SlotArray& slots = ctx.slots();
  for (std::uint64_t s = begin; s < end; ++s) {
    const std::uint64_t word = slots.load(s);
    if (word != layout::kEmptySlot) ctx.prefetch_record(word, 0);
  }
}

}  // namespace shmht::batch
