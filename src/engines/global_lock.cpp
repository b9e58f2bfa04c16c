// engines/global_lock.cpp - the global-lock engine: one robust mutex serialises everything.
//
// DESIGN
//   The simplest correct protocol, and the baseline the other engines are measured
//   against. One process-shared PTHREAD_MUTEX_ROBUST mutex, at the start of the engine
//   area, protects the whole slot array: every get, insert, assign and erase takes it
//   (WriteScope and lookup), so `cover` has nothing to do. Bucket control words are
//   unused (zero). The write paths themselves are ProtocolEngine's (protocol_engine.hpp).
//
// INVARIANTS (whenever the mutex is free and consistent)
//   The Robin Hood invariants of layout/slot.hpp; every occupied slot points at a live
//   record; the attachments' item counters sum to the occupied slot count.
//
// MEMORY ORDER
//   The mutex's acquire/release orders everything. Slot words are relaxed atomics only
//   because the layout declares them atomic for the optimistic engines. A record written
//   before lock() is visible to any later holder that reads its slot (unlock -> lock).
//
// A PROCESS THAT DIES MID-OPERATION
//   The kernel marks the robust mutex OWNER_DIED; the next lock() gets EOWNERDEAD and,
//   before anything else, runs repair_and_recount: the one adjacent duplicate an
//   interrupted shift can leave is removed (completing an erase, undoing an insert that
//   was never acknowledged) and the item count is recomputed. A record the dead writer
//   had allocated but not linked, or unlinked but not freed, is leaked (one per death;
//   `shmht check` reports unaccounted bytes). Then the mutex is marked consistent.
#include "engines/protocol_engine.hpp"
#include "robust_mutex.hpp"

#include <optional>

namespace shmht {
namespace {

class GlobalLockProtocol {
 public:
  explicit GlobalLockProtocol(TableContext& context)
      : ctx_(context), mutex_(reinterpret_cast<pthread_mutex_t*>(context.region().engine_area())) {}

  // Holds the mutex for a scope; repairs the table first if the previous owner died.
  class Guard {
   public:
    explicit Guard(GlobalLockProtocol& p) : p_(p) {
      if (p_.mutex_.lock() == RobustMutex::Acquired::kOwnerDied) {
        try {
          repaired_ = repair_and_recount(p_.ctx_);
        } catch (...) {
          p_.mutex_.unlock();
          throw;
        }
        p_.mutex_.mark_consistent();
      }
    }
    ~Guard() { p_.mutex_.unlock(); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    std::uint64_t repaired() const noexcept { return repaired_; }

   private:
    GlobalLockProtocol& p_;
    std::uint64_t repaired_ = 0;
  };

  // The whole table: the mutex, unless an outer scope of the same operation holds it
  // already (a group move's second array, growth.hpp).
  class WriteScope {
   public:
    WriteScope(GlobalLockProtocol& p, const layout::SlotArray&, std::uint64_t, const WriteScope* outer = nullptr) {
      if (outer == nullptr) guard_.emplace(p);
      detail::fault_point(testing::FaultPoint::kAfterLock);
    }
    void cover(std::uint64_t) const noexcept {}

   private:
    std::optional<Guard> guard_;
  };
  class ReadScope {
   public:
    ReadScope(GlobalLockProtocol& p, const layout::SlotArray&, std::uint64_t, const ReadScope* outer = nullptr) {
      if (outer == nullptr) guard_.emplace(p);
    }
    void cover(std::uint64_t) const noexcept {}

   private:
    std::optional<Guard> guard_;
  };

  using ExclusiveScope = Guard;

  // One lock for a batch of lookups (Table::get_many bounds the batch's size). Each key
  // is looked up in the array that holds its group, as ProtocolEngine's locked readers do.
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) {
    Guard guard(*this);
    detail::fault_point(testing::FaultPoint::kReadLocked);
    out.answer_each(keys, want_values, [&](const HashedKey& key, std::span<char> room) {
      for (;;) {
        const growth::ArrayView view = ctx_.view();
        const bool in_old = view.migrating &&
                            !group_moved(view.old, layout::SlotArray::bucket_of_slot(view.old.home_of(key.hash)));
        if (!ctx_.arrays().unchanged(view)) continue;
        return locked_lookup(ctx_, in_old ? view.old : view.current, key, room, nullptr, robin_hood::NoTouch{});
      }
    });
  }

 private:
  TableContext& ctx_;
  RobustMutex mutex_;
};

}  // namespace

std::unique_ptr<EngineBase> make_global_lock_engine(TableContext& context) {
  return std::make_unique<ProtocolEngine<GlobalLockProtocol>>(context);
}

void init_global_lock_state(Region& region) {
  RobustMutex::init(reinterpret_cast<pthread_mutex_t*>(region.engine_area()));
}

}  // namespace shmht
