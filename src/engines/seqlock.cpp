// engines/seqlock.cpp - the seqlock engine: a sequence per bucket, readers that never write.
//
// DESIGN
//   Each bucket's control word is a sequence lock:
//     63                        32 31                         0
//     +---------------------------+---------------------------+
//     | owner (engines/owner.hpp) | sequence: odd = locked    |
//     +---------------------------+---------------------------+
//   A writer takes a bucket by CAS from (even s, owner 0) to (s + 1, itself) and releases
//   it by storing (s + 2, 0). A write locks every bucket it will read or change, one by
//   one in address order as its probe advances (WriteScope::cover), before it changes
//   anything; a Robin Hood shift that spans buckets therefore holds all of them odd.
//   Address order and no wrap-around (layout/slot.hpp) make deadlock impossible.
//   Readers store nothing in shared memory: they note each bucket's sequence as the
//   probe enters it, read slots and record bytes with relaxed atomic loads (never a plain
//   memcpy of racing bytes), and then re-check every noted sequence; any change, or an
//   odd sequence, means a writer was there and the read is retried. Two readers of
//   different buckets, or of the same bucket, touch no line in common but to load it.
//
// INVARIANTS
//   Whenever a bucket's sequence is even, its slots satisfy the Robin Hood invariants
//   with respect to its neighbours that are even too; a record is reachable from a slot
//   only while it is live; a record is freed only after every bucket whose slot pointed
//   at it has moved to a new even sequence (ProtocolEngine frees after the scope ends),
//   so a reader that read a stale offset fails its re-check.
//
// MEMORY ORDER (Boehm, "Can seqlocks get along with programming language memory models?")
//   writer: CAS seq odd (acquire) ; fence(release) ; slot/record stores (relaxed) ;
//           store seq even (release)
//   reader: load seq (acquire) ; slot/record loads (relaxed) ; fence(acquire) ;
//           reload seq (relaxed), compare.
//   If a reader saw any store made after the writer's release fence, its acquire fence
//   makes the odd sequence visible to its re-check. A reader that read a new slot word
//   with an unchanged even sequence read the sequence the writer released, so the
//   record bytes written before that release are visible to it.
//   Record lengths read optimistically are bounds-checked (TableContext::checked_record)
//   before they are used: a torn read ends in a retry, never a wild read.
//
// A PROCESS THAT DIES MID-OPERATION
//   Its buckets stay odd with its owner id. A reader or writer that has spun on an odd
//   bucket for a while asks whether the owner is dead (owner.hpp: its liveness lock is
//   free, or its entry was re-attached since; exit, exec and zombies all read as dead, a
//   failed query as alive); if so it throws NeedsRecovery: ProtocolEngine releases what
//   it holds and takes an ExclusiveScope, which locks every bucket in address order,
//   taking over the dead owner's (after the first, each costs a memory compare: the dead
//   owner is remembered), runs repair_and_recount (removing the duplicate an interrupted
//   shift leaves), and releases them all with new sequences. Readers of those buckets
//   then retry and see the repaired table; nobody spins forever. If nobody is attached at
//   all when the next process arrives, recovery.hpp's cold start does the same at attach.
//   A read-only handle can repair nothing and cannot always tell a dead writer from a
//   stopped one (it may judge by pid alone): a bucket it finds held by the same writer,
//   unchanged, for liveness::kAdminLockWait ends its read in kInUse (owner.hpp's
//   ReadOnlyWait), never a wait without end.
#include "engines/optimistic_read.hpp"
#include "engines/protocol_engine.hpp"

namespace shmht {
namespace {

constexpr std::uint64_t kSequenceMask = 0xFFFFFFFFull;

constexpr bool is_locked(std::uint64_t control) noexcept { return (control & 1) != 0; }
constexpr std::uint32_t owner_of(std::uint64_t control) noexcept { return static_cast<std::uint32_t>(control >> 32); }
constexpr std::uint64_t locked_by(std::uint64_t control, std::uint32_t owner) noexcept {
  return ((control + 1) & kSequenceMask) | (std::uint64_t{owner} << 32);
}
constexpr std::uint64_t unlocked_after(std::uint64_t control) noexcept { return (control + 1) & kSequenceMask; }

static_assert(!is_locked(0), "a zeroed control word is an unlocked bucket");
static_assert(is_locked(locked_by(0, 5)) && owner_of(locked_by(0, 5)) == 5);
static_assert(unlocked_after(locked_by(0, 5)) == 2, "lock then unlock advances the sequence by two");
static_assert(unlocked_after(locked_by(kSequenceMask - 1, 5)) == 0, "the sequence wraps within its 32 bits");

class SeqlockProtocol {
 public:
  explicit SeqlockProtocol(TableContext& context)
      : ctx_(context),
        slots_(context.slots()),
        // A read-only handle has no entry, so no owner id: 0, which no lock word holds.
        me_(context.read_only() ? 0 : owner::id_of(context.region(), context.entry_index())),
        dead_(context.region()) {}

  // Write-locks buckets [first, last], growing upwards.
  class WriteScope {
   public:
    WriteScope(SeqlockProtocol& p, std::uint64_t first_slot)
        : p_(p), first_(layout::SlotArray::bucket_of_slot(first_slot)), end_(first_) {
      cover(first_slot);
      detail::fault_point(testing::FaultPoint::kAfterLock);
    }
    ~WriteScope() {
      for (std::uint64_t b = first_; b < end_; ++b) p_.unlock_unit(b);
    }
    WriteScope(const WriteScope&) = delete;
    WriteScope& operator=(const WriteScope&) = delete;

    void cover(std::uint64_t slot) {
      const std::uint64_t bucket = layout::SlotArray::bucket_of_slot(slot);
      while (end_ <= bucket) {
        p_.lock_unit(end_, false);
        ++end_;
      }
    }

   private:
    SeqlockProtocol& p_;
    std::uint64_t first_, end_;  // held: [first_, end_)
  };

  // Every bucket, in address order; buckets left locked by dead processes are taken over.
  using ExclusiveScope = AllUnitsScope<SeqlockProtocol>;
  std::uint64_t unit_count() const noexcept { return slots_.bucket_count(); }
  TableContext& context() noexcept { return ctx_; }

  // Takes a bucket's sequence odd. A bucket held by a dead owner is taken over
  // (take_over_dead, returns true: it stays odd and becomes ours, so readers keep
  // waiting until the repair is done) or reported (NeedsRecovery).
  bool lock_unit(std::uint64_t bucket, bool take_over_dead) {
    std::atomic<std::uint64_t>& control = slots_.bucket(bucket).control;
    Backoff backoff;
    bool took_over = false;
    std::uint64_t current = control.load(std::memory_order_relaxed);
    for (;;) {
      if (!is_locked(current)) {
        if (control.compare_exchange_weak(current, locked_by(current, me_), std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
          break;
        }
        continue;
      }
      const std::uint32_t holder = owner_of(current);
      if (holder == me_) owner::throw_held_by_self(ctx_.region(), "bucket", bucket);
      if (dead_.dead_after_pause(backoff, holder)) {
        if (!take_over_dead) throw NeedsRecovery{};
        const std::uint64_t ours = (current & kSequenceMask) | (std::uint64_t{me_} << 32);
        if (control.compare_exchange_strong(current, ours, std::memory_order_acquire, std::memory_order_relaxed)) {
          took_over = true;
          break;
        }
        continue;
      }
      current = control.load(std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_release);  // odd sequence before our data stores
    return took_over;
  }

  void unlock_unit(std::uint64_t bucket) noexcept {
    std::atomic<std::uint64_t>& control = slots_.bucket(bucket).control;
    control.store(unlocked_after(control.load(std::memory_order_relaxed)), std::memory_order_release);
  }

  ValueLength lookup(const HashedKey& key, std::span<char> out, std::string* out_string) {
    Backoff backoff;
    ReadOnlyWait read_only_wait;
    for (;;) {
      ReadWindow window(slots_);
      const optimistic::Attempt attempt = optimistic::try_lookup(ctx_, window, key, out, out_string);
      if (attempt.outcome == optimistic::Outcome::kValid) return attempt.value;
      if (attempt.outcome != optimistic::Outcome::kBusy) continue;
      if (attempt.busy_owner == me_) owner::throw_held_by_self(ctx_.region(), "a bucket of slot", slots_.home_of(key.hash));
      if (dead_.dead_after_pause(backoff, attempt.busy_owner)) {
        throw NeedsRecovery{};
      }
      if (ctx_.read_only()) read_only_wait.still_held(ctx_.region(), window.busy_bucket(), window.busy_control());
    }
  }

  void copy_home_range(std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out) {
    constexpr int kOptimisticAttempts = 8;
    const std::size_t keep = out->size();
    Backoff backoff;
    ReadOnlyWait read_only_wait;
    for (int attempt = 0; attempt < kOptimisticAttempts || ctx_.read_only(); ++attempt) {
      ReadWindow window(slots_);
      if (optimistic::try_copy_home_range(ctx_, window, begin, end, out)) return;
      out->resize(keep);
      // A read-only handle cannot lock: it retries, pausing, until the range is still; a
      // bucket held by a dead writer ends in the recovery error, one held past
      // kAdminLockWait by a writer it cannot judge in kInUse (owner.hpp: ReadOnlyWait).
      if (attempt >= kOptimisticAttempts) {
        if (window.busy_owner() == 0) {
          backoff.pause();
        } else if (dead_.dead_after_pause(backoff, window.busy_owner())) {
          throw_needs_write_access(ctx_, "recovering what a dead writer left locked");
        } else {
          read_only_wait.still_held(ctx_.region(), window.busy_bucket(), window.busy_control());
        }
      }
    }
    // Writers keep moving under us: lock the range as a writer would, and copy.
    WriteScope scope(*this, begin);
    locked_copy_home_range(ctx_, begin, end, out, [&](std::uint64_t s) { scope.cover(s); });
  }

 private:
  // optimistic_read.hpp's Window: a locked (odd) bucket makes enter() fail.
  class ReadWindow {
   public:
    explicit ReadWindow(const layout::SlotArray& slots) : slots_(slots) {}
    bool enter(std::uint64_t slot) {
      const std::uint64_t bucket = layout::SlotArray::bucket_of_slot(slot);
      if (noted_.covers(bucket)) return true;
      const std::uint64_t control = slots_.bucket(bucket).control.load(std::memory_order_acquire);
      if (is_locked(control)) {
        busy_owner_ = owner_of(control);
        busy_bucket_ = bucket;
        busy_control_ = control;
        return false;
      }
      noted_.note(bucket, control);
      return true;
    }
    std::uint64_t load(std::uint64_t slot) const noexcept { return slots_.load(slot); }
    bool still_valid() const { return noted_.unchanged(slots_); }
    std::uint32_t busy_owner() const { return busy_owner_; }
    // The bucket that made enter() fail, and the control word it held then.
    std::uint64_t busy_bucket() const { return busy_bucket_; }
    std::uint64_t busy_control() const { return busy_control_; }

   private:
    const layout::SlotArray& slots_;
    optimistic::NotedVersions noted_;
    std::uint32_t busy_owner_ = 0;
    std::uint64_t busy_bucket_ = 0;
    std::uint64_t busy_control_ = 0;
  };

  TableContext& ctx_;
  const layout::SlotArray& slots_;
  std::uint32_t me_;
  DeadOwners dead_;
};

}  // namespace

std::unique_ptr<EngineBase> make_seqlock_engine(TableContext& context) {
  return std::make_unique<ProtocolEngine<SeqlockProtocol>>(context);
}

}  // namespace shmht
