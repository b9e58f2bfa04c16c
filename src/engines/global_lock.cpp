// engines/global_lock.cpp - the global-lock engine: one robust mutex serialises everything.
//
// DESIGN
//   The simplest correct protocol, and the baseline the other engines are measured
//   against. One process-shared PTHREAD_MUTEX_ROBUST mutex, at the start of the engine
//   area, protects the whole slot array. Every get, insert, assign and erase takes it.
//   Bucket control words are unused (zero).
//
// WHAT HAPPENS OUTSIDE THE LOCK
//   Record bytes are written before the lock is taken (the record is private to this
//   attachment until a slot points at it), and a replaced or erased record is freed after
//   the lock is released (nobody can reach it any more). The critical section is only
//   the probe and the slot writes.
//
// INVARIANTS (held whenever the mutex is free and consistent)
//   The Robin Hood invariants of layout/slot.hpp; every occupied slot points at a
//   live record; the sum of all attachments' item_delta equals the occupied slot count.
//
// MEMORY ORDER
//   The mutex's acquire/release orders everything; slot words are accessed with relaxed
//   atomics only because the layout declares them atomic for the optimistic engines.
//   A record written before lock() is visible to any later lock holder that reads its
//   slot, via the unlock -> lock synchronisation.
//
// A PROCESS THAT DIES MID-OPERATION
//   The kernel marks the robust mutex OWNER_DIED; the next lock() gets EOWNERDEAD and
//   repairs before doing anything else: (1) robin_hood::repair_interrupted_shifts removes
//   the one adjacent duplicate an interrupted shift can leave (completing an erase,
//   undoing an insert that was never acknowledged); (2) the item count is recounted from
//   the slot array and the difference credited to the repairer's entry. A record the dead
//   writer had allocated but not linked, or unlinked but not freed, is leaked (bounded:
//   one per death). Then the mutex is marked consistent.
#include <algorithm>
#include <cstring>

#include "engines/engine.hpp"
#include "fault_injection.hpp"
#include "robin_hood.hpp"
#include "robust_mutex.hpp"
#include "shmht/error.hpp"

namespace shmht {
namespace {

using layout::Slot;
using testing::FaultPoint;

class GlobalLockEngine final : public EngineBase {
 public:
  explicit GlobalLockEngine(TableContext& context)
      : ctx_(context), mutex_(reinterpret_cast<pthread_mutex_t*>(context.region().engine_area())) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override {
    Guard guard(*this);
    const Found found = find(key);
    if (!found.record) return std::nullopt;
    const std::string_view value = record_value(found.record, found.header);
    if (value.size() <= out.size()) std::memcpy(out.data(), value.data(), value.size());
    return value.size();
  }

  bool get(const HashedKey& key, std::string* out) override {
    Guard guard(*this);
    const Found found = find(key);
    if (!found.record) return false;
    out->assign(record_value(found.record, found.header));
    return true;
  }

  bool contains(const HashedKey& key) override {
    Guard guard(*this);
    return find(key).record != nullptr;
  }

  bool insert(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    {
      Guard guard(*this);
      const robin_hood::Probe probe = probe_for(key);
      if (!probe.found) {
        link_new(key, probe, fresh);
        return true;
      }
    }
    ctx_.arena().free(fresh.offset, fresh.bytes);
    return false;
  }

  bool assign(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    std::uint64_t old_offset = 0, old_bytes = 0;
    {
      Guard guard(*this);
      const robin_hood::Probe probe = probe_for(key);
      if (!probe.found) {
        link_new(key, probe, fresh);
        return true;
      }
      const std::uint64_t word = ctx_.slots().load(probe.slot);
      layout::RecordHeader old{};
      ctx_.checked_record(word, &old);  // validated by probe_for's key compare
      old_offset = Slot::offset_of(word);
      old_bytes = record_bytes_for(old.key_bytes, old.value_bytes);
      ctx_.slots().store(probe.slot, Slot::encode(Slot::tag_of(word), Slot::dist_of(word), fresh.offset));
      detail::fault_point(FaultPoint::kAfterSlotWrite);
    }
    ctx_.arena().free(old_offset, old_bytes);
    return false;
  }

  bool erase(const HashedKey& key) override {
    std::uint64_t old_offset = 0, old_bytes = 0;
    {
      Guard guard(*this);
      const robin_hood::Probe probe = probe_for(key);
      if (!probe.found) return false;
      const std::uint64_t word = ctx_.slots().load(probe.slot);
      layout::RecordHeader old{};
      ctx_.checked_record(word, &old);
      old_offset = Slot::offset_of(word);
      old_bytes = record_bytes_for(old.key_bytes, old.value_bytes);
      robin_hood::apply_erase(ctx_.slots(), probe.slot, robin_hood::erase_run_end(ctx_.slots(), probe.slot));
      detail::fault_point(FaultPoint::kBeforeUnlock);
      ctx_.add_items(-1);
    }
    ctx_.arena().free(old_offset, old_bytes);
    return true;
  }

  void copy_home_range(std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out) override {
    Guard guard(*this);
    robin_hood::visit_home_range(ctx_.slots(), begin, end, [&](std::uint64_t, std::uint64_t word) {
      layout::RecordHeader header{};
      const std::byte* record = checked_or_throw(word, &header);
      out->emplace_back(record_key(record, header), record_value(record, header));
    });
  }

  std::uint64_t with_exclusive_access(const std::function<void()>& fn) override {
    repaired_shifts_ = 0;
    Guard guard(*this);
    fn();
    return repaired_shifts_;
  }

 private:
  // Holds the mutex for a scope; repairs the table first if the previous owner died.
  class Guard {
   public:
    explicit Guard(GlobalLockEngine& engine) : engine_(engine) {
      if (engine_.mutex_.lock() == RobustMutex::Acquired::kOwnerDied) {
        try {
          engine_.repair_after_owner_died();
        } catch (...) {
          engine_.mutex_.unlock();
          throw;
        }
        engine_.mutex_.mark_consistent();
      }
      detail::fault_point(FaultPoint::kAfterLock);
    }
    ~Guard() { engine_.mutex_.unlock(); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    GlobalLockEngine& engine_;
  };

  struct Found {
    const std::byte* record = nullptr;
    layout::RecordHeader header{};
  };
  struct NewRecord {
    std::uint64_t offset, bytes;
  };

  NewRecord write_record(const HashedKey& key, std::string_view value) {
    const std::uint64_t bytes = record_bytes_for(key.bytes.size(), value.size());
    const std::uint64_t offset = ctx_.arena().allocate(bytes);
    store_record(ctx_.region().at(offset), key.bytes, value);
    return {offset, bytes};
  }

  const std::byte* checked_or_throw(std::uint64_t word, layout::RecordHeader* header) {
    const std::byte* record = ctx_.checked_record(word, header);
    if (record == nullptr) {
      throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": corrupt table: a slot points at an invalid record (offset " +
                                           std::to_string(Slot::offset_of(word)) + "); run `shmht check`");
    }
    return record;
  }

  robin_hood::Probe probe_for(const HashedKey& key) {
    const auto& slots = ctx_.slots();
    return robin_hood::probe(slots, slots.home_of(key.hash), layout::SlotArray::tag_of_hash(key.hash),
                             [&](std::uint64_t word) {
                               layout::RecordHeader header{};
                               const std::byte* record = checked_or_throw(word, &header);
                               return record_key(record, header) == key.bytes;
                             });
  }

  Found find(const HashedKey& key) {
    const robin_hood::Probe probe = probe_for(key);
    Found found;
    if (probe.found) found.record = checked_or_throw(ctx_.slots().load(probe.slot), &found.header);
    return found;
  }

  // Links a written record at the probe's insertion point. On a full table the record is
  // returned to the arena and kTableFull thrown; nothing in the slot array changed.
  void link_new(const HashedKey& key, const robin_hood::Probe& probe, const NewRecord& fresh) {
    const robin_hood::InsertPlan plan = robin_hood::plan_insert(ctx_.slots(), probe.slot, probe.dist);
    if (!plan.ok) {
      ctx_.arena().free(fresh.offset, fresh.bytes);
      throw Error(ErrorCode::kTableFull,
                  ctx_.region().path() + ": table full: no free slot within probe distance " +
                      std::to_string(layout::kMaxDist) + " of the key's home (capacity " +
                      std::to_string(ctx_.fixed().capacity) + "; create the table with a larger capacity)");
    }
    robin_hood::apply_insert(ctx_.slots(), plan, Slot::encode(layout::SlotArray::tag_of_hash(key.hash), 0, fresh.offset));
    detail::fault_point(FaultPoint::kBeforeUnlock);
    ctx_.add_items(1);
  }

  void repair_after_owner_died() {
    repaired_shifts_ += robin_hood::repair_interrupted_shifts(ctx_.slots());
    std::int64_t occupied = 0;
    const auto& slots = ctx_.slots();
    for (std::uint64_t i = 0; i < slots.probe_limit(); ++i) occupied += slots.load(i) != layout::kEmptySlot;
    std::int64_t counted = 0;
    for (std::uint32_t i = 0; i < ctx_.fixed().max_processes; ++i) {
      counted += ctx_.region().entry(i).item_delta.load(std::memory_order_relaxed);
    }
    ctx_.add_items(occupied - counted);
  }

  TableContext& ctx_;
  RobustMutex mutex_;
  std::uint64_t repaired_shifts_ = 0;
};

}  // namespace

std::unique_ptr<EngineBase> make_global_lock_engine(TableContext& context) {
  return std::make_unique<GlobalLockEngine>(context);
}

}  // namespace shmht
