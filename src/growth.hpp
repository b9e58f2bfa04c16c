// growth.hpp - the slot array grows: a larger array is built inside the region and the
// entries move into it group by group while every process keeps working.
//
// GENERATIONS
//   Generation g's slot array has fixed.home_slots << g home slots: each growth doubles
//   them EXACTLY, so a key's home h (fastrange, layout/slot.hpp) becomes 2h or 2h + 1, and
//   every boundary between home slots of generation g is one of generation g + 1 too.
//   Generation 0 is the array create() made; the others are claimed from the arena as
//   runs of whole chunks (layout::array_claim marks the first chunk) and published in
//   Header::array_offsets[g], never to change. Header::growth says which generation is
//   current and whether a MIGRATION into it is under way; only one runs at a time.
//
// HOME GROUPS AND THE MOVED BIT
//   The unit of migration is a HOME GROUP: the keys whose home slot lies in one bucket of
//   the old array (7 home slots; their keys may sit further right, displaced). Its keys'
//   new homes lie in 14 consecutive home slots of the new array, and nobody else's do.
//   A group is moved by copying its keys into the new array and then setting MOVED (bit
//   63) in the old bucket's control word, which is never cleared. Until MOVED is set the
//   old array is the group's truth; from then on the new one is. So every operation first
//   asks the key's old home bucket: MOVED, look in the next array; not MOVED, here.
//
// WHO MOVES WHAT
//   A write during a migration first makes sure its own key's group is moved (it moves
//   it if not), then claims a few more groups (Header::migration_cursor, fetch_add) and
//   moves those: bounded work per write, and no write waits for the whole migration.
//   After the cursor passes the last group, whoever finds it so scans every group's
//   MOVED bit, moves what a stopped or killed claimant left, and then marks the migration
//   finished (CAS of Header::growth). Readers never move anything.
//   Writes always go to the current array once their group is moved. The old array is
//   therefore written only by writes that began before the migration did (they hold the
//   lock of their key's home bucket, so its group cannot move under them; and they find
//   out if it moved before they got that lock, because the growth word changed).
//
// HOW ENGINES MOVE A GROUP
//   Lock engines (protocol_engine.hpp): under their write locks, taking the old array's
//   buckets before the new array's (address order; the striped engine maps both arrays
//   onto one stripe order by hash position), purging any copy a killed mover left in the
//   new array first. Lock-free engine: one multi-word CAS.
//
// WHEN TO GROW, AND BY HOW MUCH
//   By 2, always (the exact doubling above is what keeps home groups disjoint). Writers
//   start a growth when an insert finds no free slot within the probe-distance limit
//   (254), and, checked every kLoadCheckInterval inserts of a handle, when the items reach
//   kGrowAtLoad of the home slots: the load at which create() sizes a table for its
//   capacity, so a table never holding more than its capacity never grows.
//
// RECLAIMING OLD ARRAYS
//   When a migration finishes, its old array is punched out of the file (fallocate), its
//   memory returned to the filesystem. Nobody waits for anybody: a process that looked at
//   the growth word before the migration finished and still reads the old array must
//   notice. Optimistic readers re-check the growth word when they validate; lock holders
//   re-check it right after taking the lock of their key's home bucket (which no mover
//   can take meanwhile), and start again if it changed. A stopped process delays nothing;
//   waking up, it may fault one punched page back in (zeros, never read as data).
//
// TRUST
//   The growth word, cursor and offsets are shared words a peer may scribble on. Every
//   array is validated once (offset inside the arena, on a chunk boundary, its claim
//   naming its generation and size) into a private copy that sizes every walk; a bad
//   word ends in kCorrupt, never in a wild read.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "layout/header.hpp"
#include "layout/slot.hpp"
#include "region.hpp"

namespace shmht::growth {

// Items per home slot at which a table grows (create() sizes a table for its capacity at it).
inline constexpr double kGrowAtLoad = 0.85;
// A handle checks the load every this many inserts (a sum over the attachments' counters).
inline constexpr std::uint32_t kLoadCheckInterval = 64;
// Groups a write moves per claim, on top of its own key's group.
inline constexpr std::uint64_t kGroupsPerClaim = 8;
// Once every group is claimed, one write in this many (per handle) checks every group and
// finishes the migration: the claimant of the last groups does at once, but it may have
// been killed or stopped.
inline constexpr std::uint32_t kFinishEvery = 64;
// Home slots of the largest array: slot indices and record offsets stay within a word.
inline constexpr std::uint64_t kMaxHomeSlots = std::uint64_t{1} << 39;

struct State {
  std::uint32_t generation;
  bool migrating;
};
constexpr std::uint64_t encode(State s) noexcept { return (std::uint64_t{s.generation} << 1) | (s.migrating ? 1u : 0u); }
constexpr State decode(std::uint64_t word) noexcept {
  return {static_cast<std::uint32_t>(word >> 1), (word & 1) != 0};
}
static_assert(decode(encode({7, true})).generation == 7 && decode(encode({7, true})).migrating);
static_assert(encode({0, false}) == 0, "a new table's zeroed growth word: generation 0, not migrating");

constexpr std::uint64_t cursor_word(std::uint32_t generation, std::uint64_t next) noexcept {
  return (std::uint64_t{generation} << 40) | next;
}
constexpr std::uint32_t cursor_generation(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word >> 40); }
constexpr std::uint64_t cursor_next(std::uint64_t word) noexcept { return word & ((std::uint64_t{1} << 40) - 1); }

// Generation g's home slots, buckets and the chunks its array spans.
inline std::uint64_t home_slots_of(const layout::ImmutableHeader& fixed, std::uint32_t g) noexcept {
  return fixed.home_slots << g;
}
inline std::uint64_t array_bytes(std::uint64_t home_slots) noexcept {
  return layout::SlotArray::bucket_count_for(home_slots) * sizeof(layout::Bucket);
}
std::uint64_t array_chunks(const layout::ImmutableHeader& fixed, std::uint32_t g) noexcept;
// The most generations this table can have (kMaxGenerations, kMaxHomeSlots, max_bytes).
std::uint32_t generation_limit(const layout::ImmutableHeader& fixed) noexcept;

// What one operation works on: the current array and, during a migration, the old one.
struct ArrayView {
  std::uint64_t word = 0;  // Header::growth as loaded: unchanged() compares it
  std::uint32_t generation = 0;
  bool migrating = false;
  layout::SlotArray current;
  layout::SlotArray old;  // valid() only while migrating
};

// A handle's validated copies of the arrays, and its view of the growth word.
class Arrays {
 public:
  explicit Arrays(Region& region);

  // The arrays as the growth word says now: one acquire load, and the cached view unless
  // the word changed since the last call.
  const ArrayView& view() {
    const std::uint64_t word = region_->header().growth.load(std::memory_order_acquire);
    if (word != view_.word || !view_.current.valid()) refresh(word);
    return view_;
  }
  // The view the last view() returned (no load).
  const ArrayView& last() const noexcept { return view_; }
  // True while the growth word still reads as when `v` was taken: then no array `v` names
  // has been punched, and no group of `v.current` has moved.
  bool unchanged(const ArrayView& v) const noexcept {
    return region_->header().growth.load(std::memory_order_acquire) == v.word;
  }
  // Generation g's array, validated (kCorrupt if its published offset is not an array).
  const layout::SlotArray& array(std::uint32_t g);

 private:
  void refresh(std::uint64_t word);

  Region* region_;
  ArrayView view_;
  std::array<layout::SlotArray, layout::kMaxGenerations> arrays_{};
};

// Starts the migration into generation seen.generation + 1, unless the growth word moved
// since `seen` (someone else did, or finished one): allocates and publishes the array if
// nobody has yet, then flips the growth word. `initial_control` is what the engine wants
// in a new array's control words (0 for the lock engines). Throws kTableFull when the
// array would pass max_bytes or the largest array, kNoSpace when the filesystem is full.
void start(Region& region, const ArrayView& seen, std::uint64_t initial_control);

// The next groups of `view`'s migration nobody has claimed: [begin, end), empty once
// every group has been claimed (the caller then checks them all: finish below).
struct GroupRange {
  std::uint64_t begin, end;
  bool empty() const noexcept { return begin >= end; }
};
GroupRange claim_groups(Region& region, const ArrayView& view, std::uint64_t count);

// Marks `view`'s migration finished (the caller found every group MOVED). True if this
// call did; false if someone else finished it first, or the growth word moved. A lock
// engine calls it holding the lock of the old array's first group, which every exclusive
// scope (check, recovery) holds too: a migration never ends under one.
bool mark_finished(Region& region, const ArrayView& view);

// Punches out every array nobody can use any more: the arrays of generations below the
// current one, and arrays claimed for a generation up to the current one but never
// published (their grower was killed, or lost the race). Called after mark_finished,
// outside any lock: nobody reads those arrays and trusts it (growth word re-checks).
void reclaim(Region& region, Arrays& arrays, const ArrayView& finished);

// Groups of `view`'s old array with MOVED set (stats; reads every group's control word).
std::uint64_t moved_groups(const Region& region, const ArrayView& view) noexcept;

}  // namespace shmht::growth
