#include "engines/recovery.hpp"

#include <algorithm>
#include <atomic>

#include "arena.hpp"
#include "engines/engine.hpp"
#include "robin_hood.hpp"

namespace shmht::recovery {

namespace {

// Credits `credit_entry` (owner-only counter: the caller holds it) with the difference
// between the occupied slots and what every counter adds up to.
void recount(Region& region, const layout::SlotArray& slots, std::uint32_t credit_entry) {
  std::int64_t occupied = 0;
  for (std::uint64_t i = 0; i < slots.probe_limit(); ++i) occupied += slots.load(i) != layout::kEmptySlot;
  auto& counter = region.entry(credit_entry).item_delta;
  counter.store(layout::wrapping_add(counter.load(std::memory_order_relaxed), layout::wrapping_sub(occupied, counted_items(region))),
                std::memory_order_relaxed);
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

std::uint64_t repair_and_recount(Region& region, const layout::SlotArray& slots, std::uint32_t credit_entry) {
  const std::uint64_t repaired = robin_hood::repair_interrupted_shifts(slots);
  recount(region, slots, credit_entry);
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
  const std::uint64_t repaired = robin_hood::repair_interrupted_shifts(region.slots());
  // Keep the striped engine's recorded stripe count unless the engine changes.
  const std::uint32_t active = header.active_engine.load(std::memory_order_relaxed);
  if (engine == active && static_cast<Engine>(engine) == Engine::kStripedRwLock) {
    stripes = header.stripe_count.load(std::memory_order_relaxed);
  }
  switch_engine_state(region, engine, stripes);  // zeroes the lock-free counters too: recount after
  recount(region, region.slots(), own_entry);
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
