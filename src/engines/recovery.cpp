#include "engines/recovery.hpp"

#include <algorithm>
#include <atomic>

#include "arena.hpp"
#include "engines/engine.hpp"
#include "growth.hpp"
#include "robin_hood.hpp"

namespace shmht::recovery {

namespace {

// Occupied slots of `slots`, or with `unmoved_only` of the groups not MOVED out of it.
std::int64_t occupied_slots(const layout::SlotArray& slots, bool unmoved_only) {
  std::int64_t occupied = 0;
  for (std::uint64_t i = 0; i < slots.probe_limit(); ++i) {
    const std::uint64_t word = slots.load(i);
    if (word == layout::kEmptySlot) continue;
    const std::uint64_t home = i - std::min<std::uint64_t>(layout::Slot::dist_of(word), i);
    if (unmoved_only && (home >= slots.home_slots() ||
                         layout::is_moved(slots.bucket(layout::SlotArray::bucket_of_slot(home)).control.load(std::memory_order_relaxed)))) {
      continue;
    }
    ++occupied;
  }
  return occupied;
}

// Credits `credit_entry` (owner-only counter: the caller holds it) with the difference
// between the items the arrays hold and what every counter adds up to. During a
// migration an item is counted where its group lives: the old array's unmoved groups,
// and all of the current array (purge_unmoved_copies has removed what else it held).
void recount(Region& region, const growth::ArrayView& view, std::uint32_t credit_entry) {
  std::int64_t occupied = occupied_slots(view.current, false);
  if (view.migrating) occupied += occupied_slots(view.old, true);
  auto& counter = region.entry(credit_entry).item_delta;
  counter.store(layout::wrapping_add(counter.load(std::memory_order_relaxed), layout::wrapping_sub(occupied, counted_items(region))),
                std::memory_order_relaxed);
}

// A mover killed part way (growth.hpp) leaves copies of a group that has not MOVED in the
// current array: removed (slot words only; the records belong to the old array's slots).
// Returns how many.
std::uint64_t purge_unmoved_copies(const growth::ArrayView& view) {
  if (!view.migrating) return 0;
  std::uint64_t purged = 0;
  const layout::SlotArray& current = view.current;
  for (std::uint64_t i = 0; i < current.probe_limit();) {
    const std::uint64_t word = current.load(i);
    const std::uint64_t home = i - std::min<std::uint64_t>(layout::Slot::dist_of(word), i);
    const std::uint64_t group = home / (2 * layout::kSlotsPerBucket);
    if (word == layout::kEmptySlot || group >= view.old.group_count() ||
        layout::is_moved(view.old.bucket(group).control.load(std::memory_order_relaxed))) {
      ++i;
      continue;
    }
    robin_hood::apply_erase(current, i, robin_hood::erase_run_end(current, i));  // slot i now holds the next word
    ++purged;
  }
  return purged;
}

// The interrupted shifts of every live array, and a killed mover's copies.
std::uint64_t repair_arrays(const growth::ArrayView& view) {
  std::uint64_t repaired = robin_hood::repair_interrupted_shifts(view.current);
  if (view.migrating) repaired += robin_hood::repair_interrupted_shifts(view.old);
  purge_unmoved_copies(view);
  return repaired;
}

// Read-only handles are no attachments: nothing here waits for them, so they read while
// a cold start rewrites. rewrite_epoch (layout/header.hpp) tells them: odd from before
// the first change (the release fence orders it before every store that follows, so a
// reader that sees any of them sees the odd epoch when it re-checks) to after the last.
class RewriteScope {
 public:
  explicit RewriteScope(layout::Header& header) : epoch_(header.rewrite_epoch) {
    epoch_.store(epoch_.load(std::memory_order_relaxed) | 1u, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }
  ~RewriteScope() {
    // Not on a throw either: what was rewritten so far is consistent, and the next cold
    // start starts over; leaving it odd would only stall readers until then.
    epoch_.store((epoch_.load(std::memory_order_relaxed) | 1u) + 1, std::memory_order_release);
  }
  RewriteScope(const RewriteScope&) = delete;
  RewriteScope& operator=(const RewriteScope&) = delete;

 private:
  std::atomic<std::uint32_t>& epoch_;
};

}  // namespace

std::uint64_t repair_and_recount(Region& region, const growth::ArrayView& view, std::uint32_t credit_entry) {
  const std::uint64_t repaired = repair_arrays(view);
  recount(region, view, credit_entry);
  return repaired;
}

std::uint64_t cold_start(Region& region, std::uint32_t own_entry, std::uint32_t engine, std::uint32_t stripes,
                         bool recover) {
  if (!recover) {
    if (static_cast<Engine>(engine) == Engine::kGlobalLock) init_global_lock_state(region);
    return 0;
  }
  layout::Header& header = region.header();
  const RewriteScope rewriting(header);
  settle_engine_state(region, own_entry);
  growth::Arrays arrays(region);
  const growth::ArrayView view = arrays.view();
  const std::uint64_t repaired = repair_arrays(view);
  // Keep the striped engine's recorded stripe count unless the engine changes.
  const std::uint32_t active = header.active_engine.load(std::memory_order_relaxed);
  if (engine == active && static_cast<Engine>(engine) == Engine::kStripedRwLock) {
    stripes = header.stripe_count.load(std::memory_order_relaxed);
  }
  switch_engine_state(region, engine, stripes);  // zeroes the lock-free counters too: recount after
  recount(region, view, own_entry);
  // A writer killed between a free list and its counter left the counter off by one.
  const std::uint32_t used_entries = std::min(header.entry_high_water.load(std::memory_order_relaxed), region.fixed().max_processes);
  for (std::uint32_t e = 0; e < used_entries; ++e) recount_free_lists(region, e);
  recount_shared_free_lists(region);
  header.active_engine.store(engine, std::memory_order_release);
  // Everything the dead attachments held is recovered: they are now merely detached
  // (their allocator state stays for whoever takes their entries).
  for (std::uint32_t e = 0; e < region.fixed().max_processes; ++e) {
    if (e != own_entry) region.entry(e).attached.store(0, std::memory_order_relaxed);
  }
  return repaired;
}

}  // namespace shmht::recovery
