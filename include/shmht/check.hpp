// shmht/check.hpp - verify every invariant of a table, whatever engine wrote it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shmht {

struct CheckReport {
  bool clean = true;
  std::vector<std::string> problems;   // one line each; empty when clean
  std::uint64_t items = 0;             // occupied slots
  std::uint64_t counted_items = 0;     // sum of the attachments' item counters
  std::uint64_t free_records = 0;
  std::uint64_t live_record_bytes = 0; // class bytes of the records slots point at
  std::uint64_t free_record_bytes = 0;
  // Arena bytes neither live, free nor an unused chunk tail: records allocated but not
  // linked from any slot. A writer allocates before it links (and unlinks before it
  // frees), so while other attachments are live these may be in flight; with none, they
  // were leaked by writers killed part way.
  std::uint64_t unaccounted_bytes = 0;
  // How far each item sits past its home slot: displacements[d] items are d slots past
  // it (a lookup of one walks d + 1 slots), up to the largest d found. Of those, the
  // items in a later bucket than their home slot's: a lookup of one reads two bucket
  // lines (what Table::get_many's prefetching plans for, src/batch_prefetch.hpp).
  std::vector<std::uint64_t> displacements;
  std::uint64_t past_home_bucket = 0;
  std::uint32_t other_attachments = 0;  // live attachments besides the checker's own
  std::uint64_t repaired_shifts = 0;    // interrupted operations repaired while locking
  std::uint64_t reclaimed_bytes = 0;    // leaked bytes put back on the free lists (CheckOptions)
  std::string not_reclaimed_because;    // set when reclaiming was asked for but not done
  // Growth: the current slot array's generation, whether a migration into it is under
  // way (then both arrays were checked, each group where its MOVED bit says it lives),
  // and the arena bytes held by slot arrays (current, old, or claimed by a grower that
  // lost a race or died before publishing one).
  std::uint32_t generation = 0;
  bool migrating = false;
  std::uint64_t slot_array_bytes = 0;
};

struct CheckOptions {
  // Put the arena bytes that nothing accounts for (records leaked by writers killed
  // between allocating and linking, or between unlinking and freeing) back on the free
  // lists. Done only when no other process is attached (new ones wait meanwhile) and
  // nothing else is wrong: a live writer's record in flight looks exactly like a leaked
  // one. `shmht check --repair`.
  bool reclaim_leaked = false;
  // Check a table that another user owns although it could be a plant
  // (OpenOptions::trust_foreign_owner). `shmht check --trust-owner`.
  bool trust_foreign_owner = false;
};

// Opens `name` with its active engine, takes exclusive access (which, as for any lock
// holder, first repairs what a dead process left half done) and checks: every offset in
// bounds and 8-aligned; every record's lengths within limits; each key's hash gives its
// tag and its home slot (slot - dist); the Robin Hood ordering; no duplicate key or
// offset; the item counters sum to the occupied slots; every free list stays in the
// arena, holds no live record and no cycle. Unaccounted bytes are not a problem (see
// CheckReport::unaccounted_bytes).
CheckReport check_table(const std::string& name, const CheckOptions& options = {});

}  // namespace shmht
