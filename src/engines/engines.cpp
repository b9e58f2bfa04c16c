// engines/engines.cpp - engine names, which engines are built, and dispatch.
#include <algorithm>
#include <atomic>
#include <cstring>

#include "engines/engine.hpp"
#include "engines/lockfree/kcas.hpp"
#include "fault_injection.hpp"
#include "shmht/error.hpp"

namespace shmht {

std::string_view engine_name(Engine engine) noexcept {
  switch (engine) {
    case Engine::kGlobalLock: return "global";
    case Engine::kStripedRwLock: return "striped";
    case Engine::kSeqlock: return "seqlock";
    case Engine::kLockFreeRobinHood: return "lockfree";
  }
  return "unknown";
}

std::optional<Engine> parse_engine(std::string_view name) noexcept {
  for (Engine e : kAllEngines) {
    if (engine_name(e) == name) return e;
  }
  return std::nullopt;
}

bool engine_is_built(Engine engine) noexcept { return engine_name(engine) != "unknown"; }

namespace {
[[noreturn]] void throw_unavailable(Engine engine) {
  std::string built;
  for (Engine e : kAllEngines) {
    if (engine_is_built(e)) built += (built.empty() ? "" : ", ") + std::string(engine_name(e));
  }
  throw Error(ErrorCode::kEngineUnavailable,
              "engine '" + std::string(engine_name(engine)) + "' is not built yet; available: " + built);
}
}  // namespace

void require_engine_built(Engine engine) {
  if (!engine_is_built(engine)) throw_unavailable(engine);
}

void EngineBase::lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) {
  out.answer_each(keys, want_values, [&](const HashedKey& key, std::span<char> room) { return ValueLength::of(get(key, room)); });
}

std::unique_ptr<EngineBase> make_engine(Engine engine, TableContext& context) {
  switch (engine) {
    case Engine::kGlobalLock: return make_global_lock_engine(context);
    case Engine::kStripedRwLock: return make_striped_engine(context);
    case Engine::kSeqlock: return make_seqlock_engine(context);
    case Engine::kLockFreeRobinHood: return make_lockfree_engine(context);
    default: throw_unavailable(engine);
  }
}

namespace {

// Zeroes [bytes, bytes + size) writing only the words that are not zero already: reading
// a never-written page of a tmpfs file allocates nothing, writing it would.
void zero_lazily(std::byte* bytes, std::uint64_t size) {
  auto* words = reinterpret_cast<std::atomic<std::uint64_t>*>(bytes);
  for (std::uint64_t i = 0; i < size / sizeof(std::uint64_t); ++i) {
    if (words[i].load(std::memory_order_relaxed) != 0) words[i].store(0, std::memory_order_relaxed);
  }
}

}  // namespace

std::int64_t counted_items(const Region& region, const CounterReader& read) {
  std::int64_t counted = 0;
  const auto* descriptors = region.at<layout::KcasDescriptor>(region.fixed().engine_area_offset +
                                                              layout::descriptors_offset(region.fixed().max_processes));
  // Entries past the high-water mark were never attached: their counters are zero, and
  // not reading them keeps their pages unallocated (a read fault allocates on tmpfs).
  const std::uint32_t entries = std::min(region.header().entry_high_water.load(std::memory_order_acquire),
                                         region.fixed().max_processes);
  // The lock-free counters count modulo 2^40, so only their sum over every entry is
  // meaningful: one entry may have added what another removed, each past the wrap. Summed
  // modulo 2^40, then read once as a signed 40-bit value.
  std::uint64_t lockfree_sum = 0;
  for (std::uint32_t e = 0; e < entries; ++e) {
    counted = layout::wrapping_add(counted, region.entry(e).item_delta.load(std::memory_order_relaxed));
    lockfree_sum += read(descriptors[e].items_added) - read(descriptors[e].items_removed);
  }
  const std::uint64_t difference = lockfree_sum & lockfree::kValueMask;
  return layout::wrapping_add(counted, static_cast<std::int64_t>(difference << 24) >> 24);
}

void settle_engine_state(Region& region, std::uint32_t own_entry) {
  if (static_cast<Engine>(region.header().active_engine.load(std::memory_order_acquire)) == Engine::kLockFreeRobinHood) {
    lockfree::Kcas(region, own_entry).help_all();
  }
}

void switch_engine_state(Region& region, std::uint32_t engine, std::uint32_t stripes) {
  const auto e = static_cast<Engine>(engine);
  require_engine_built(e);
  // Another engine's state (lock words, sequences), or this engine's left by processes
  // that are gone, is meaningless now: clear the engine area and every control word,
  // then initialise what this engine keeps there.
  // A new file is all zeros already. Otherwise only what attached entries (below the
  // high-water mark) can have written is cleared: the locks and reader flags, and their
  // lock-free descriptors. Never-used descriptors are not even read: on tmpfs a read
  // fault allocates the page, and they are most of the engine area.
  if (region.header().state.load(std::memory_order_acquire) == layout::kStateReady) {
    const std::uint32_t entries = std::min(region.header().entry_high_water.load(std::memory_order_acquire),
                                           region.fixed().max_processes);
    zero_lazily(region.engine_area(), layout::kReaderFlagsOffset + sizeof(layout::ReaderFlags) * entries);
    zero_lazily(region.engine_area() + layout::descriptors_offset(region.fixed().max_processes),
                sizeof(layout::KcasDescriptor) * entries);
  }
  // Every live array's control words, keeping MOVED (growth.hpp): during a migration it
  // is the only record of which array holds each group. The lock-free engine's versions
  // start at 1, never 0 (lockfree/kcas.hpp kInitialVersion: a punched array reads as 0).
  const std::uint64_t initial = e == Engine::kLockFreeRobinHood ? lockfree::kInitialVersion : 0;
  growth::Arrays arrays(region);
  const growth::ArrayView& view = arrays.view();
  // An array published for the next growth whose grower died before starting the
  // migration is no view's yet, but the next growth uses it as it is: reset it too.
  layout::SlotArray next;
  if (!view.migrating && view.generation + 1 < growth::generation_limit(region.fixed()) &&
      region.header().array_offsets[view.generation + 1].load(std::memory_order_acquire) != 0) {
    try {
      next = arrays.array(view.generation + 1);
    } catch (const Error&) {
      // Not a valid array: the growth that meets it reports it.
    }
  }
  for (const layout::SlotArray* slots : {&view.current, &view.old, const_cast<const layout::SlotArray*>(&next)}) {
    if (!slots->valid()) continue;
    for (std::uint64_t b = 0; b < slots->bucket_count(); ++b) {
      // Only write words that change: reading a never-written page does not allocate it.
      auto& control = slots->bucket(b).control;
      const std::uint64_t word = control.load(std::memory_order_relaxed);
      const std::uint64_t reset = (word & layout::kMovedBit) | initial;
      if (word != reset) control.store(reset, std::memory_order_relaxed);
    }
  }
  detail::fault_point(testing::FaultPoint::kColdStartMidway);  // the worst moment: no engine's state
  if (e == Engine::kGlobalLock) init_global_lock_state(region);
  if (e == Engine::kStripedRwLock) init_striped_state(region, stripes);
  // The seqlock keeps its state in the control words, which are now zero (even: unlocked).
}

}  // namespace shmht
