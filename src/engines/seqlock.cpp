// engines/seqlock.cpp - the seqlock engine: a sequence per bucket, readers that never write.
//
// DESIGN
//   Each bucket's control word is a sequence lock:
//     63  62                    32 31                         0
//     +--+------------------------+---------------------------+
//     |MV| owner (engines/owner.hpp) | sequence: odd = locked |
//     +--+------------------------+---------------------------+
//   MV is MOVED (growth.hpp): set once, under the lock, by the write that moves the
//   bucket's home group to the next array; locking and unlocking keep it.
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
// GROWTH
//   A reader starts in the array that holds its key's group when it looks at the growth
//   word: the old array during a migration. A home bucket noted with MOVED sends it on to
//   the current array; its validation then also re-reads the growth word, so an array
//   punched out after a migration (growth.hpp) can never validate a read.
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
constexpr std::uint64_t kOwnerMask = 0x7FFFFFFFull;

constexpr bool is_locked(std::uint64_t control) noexcept { return (control & 1) != 0; }
constexpr std::uint32_t owner_of(std::uint64_t control) noexcept { return static_cast<std::uint32_t>((control >> 32) & kOwnerMask); }
constexpr std::uint64_t locked_by(std::uint64_t control, std::uint32_t owner) noexcept {
  return (control & layout::kMovedBit) | ((control + 1) & kSequenceMask) | ((std::uint64_t{owner} & kOwnerMask) << 32);
}
constexpr std::uint64_t unlocked_after(std::uint64_t control) noexcept {
  return (control & layout::kMovedBit) | ((control + 1) & kSequenceMask);
}
// A dead owner's locked word, now held by `owner`: the same sequence (still odd), MOVED kept.
constexpr std::uint64_t taken_over_by(std::uint64_t control, std::uint32_t owner) noexcept {
  return (control & (layout::kMovedBit | kSequenceMask)) | ((std::uint64_t{owner} & kOwnerMask) << 32);
}

static_assert(!is_locked(0), "a zeroed control word is an unlocked bucket");
static_assert(is_locked(locked_by(0, 5)) && owner_of(locked_by(0, 5)) == 5);
static_assert(unlocked_after(locked_by(0, 5)) == 2, "lock then unlock advances the sequence by two");
static_assert(unlocked_after(locked_by(kSequenceMask - 1, 5)) == 0, "the sequence wraps within its 32 bits");
static_assert(layout::is_moved(unlocked_after(locked_by(layout::kMovedBit, 0x7FFFFFFF))) &&
                  owner_of(locked_by(layout::kMovedBit, 0x7FFFFFFF)) == 0x7FFFFFFF,
              "locking and unlocking keep MOVED, and the largest owner id does not reach it");

class SeqlockProtocol {
 public:
  explicit SeqlockProtocol(TableContext& context)
      : ctx_(context),
        // A read-only handle has no entry, so no owner id: 0, which no lock word holds.
        me_(context.read_only() ? 0 : owner::id_of(context.region(), context.entry_index())),
        dead_(context.region()) {}

  // Write-locks buckets [first, last] of one array, growing upwards. Another array's
  // scope (`outer`) holds its own buckets: nothing to share.
  class WriteScope {
   public:
    WriteScope(SeqlockProtocol& p, const layout::SlotArray& slots, std::uint64_t first_slot,
               const WriteScope* /*outer*/ = nullptr)
        : p_(p), slots_(slots), first_(layout::SlotArray::bucket_of_slot(first_slot)), end_(first_) {
      cover(first_slot);
      detail::fault_point(testing::FaultPoint::kAfterLock);
    }
    ~WriteScope() {
      for (std::uint64_t b = first_; b < end_; ++b) p_.unlock_bucket(slots_, b);
    }
    WriteScope(const WriteScope&) = delete;
    WriteScope& operator=(const WriteScope&) = delete;

    void cover(std::uint64_t slot) {
      const std::uint64_t bucket = layout::SlotArray::bucket_of_slot(slot);
      while (end_ <= bucket) {
        p_.lock_bucket(slots_, end_, false);
        ++end_;
      }
    }

   private:
    SeqlockProtocol& p_;
    const layout::SlotArray slots_;
    std::uint64_t first_, end_;  // held: [first_, end_)
  };

  // Every bucket of every live array (the old one first), in address order; buckets left
  // locked by dead processes are taken over. The arrays a growth publishes while the
  // sweep runs are added after the others (a newer array lies further into the file);
  // an array that stopped being live meanwhile stays held to the end of the scope.
  using ExclusiveScope = AllUnitsScope<SeqlockProtocol>;
  std::uint64_t unit_count(bool first) {
    if (first) {
      exclusive_arrays_.clear();
      exclusive_units_ = 0;
    }
    const growth::ArrayView& view = ctx_.view();
    if (view.migrating) add_exclusive_array(view.old, view.generation - 1);
    add_exclusive_array(view.current, view.generation);
    return exclusive_units_;
  }
  TableContext& context() noexcept { return ctx_; }
  bool lock_unit(std::uint64_t unit, bool take_over_dead) {
    const auto [slots, bucket] = exclusive_unit(unit);
    return lock_bucket(slots, bucket, take_over_dead);
  }
  void unlock_unit(std::uint64_t unit) noexcept {
    const auto [slots, bucket] = exclusive_unit(unit);
    unlock_bucket(slots, bucket);
  }

  ValueLength lookup(const HashedKey& key, std::span<char> out, std::string* out_string) {
    Backoff backoff;
    ReadOnlyWait read_only_wait;
    for (;;) {
      const growth::ArrayView view = ctx_.view();
      const layout::SlotArray& first = view.migrating ? view.old : view.current;
      ReadWindow window(ctx_, first, view);
      const optimistic::Attempt attempt = optimistic::try_lookup(ctx_, first, window, key, out, out_string);
      if (attempt.outcome == optimistic::Outcome::kValid) return attempt.value;
      if (attempt.outcome != optimistic::Outcome::kMoved) {
        wait_if_busy(attempt, key, backoff, read_only_wait, window);
        continue;
      }
      if (!view.migrating) {
        // The current array's group moved: so did the growth word, unless a peer wrote
        // MOVED where no migration put it (waiting would never end).
        if (ctx_.arrays().unchanged(view)) throw_moved_without_migration(key);
        continue;
      }
      ReadWindow next(ctx_, view.current, view);
      const optimistic::Attempt moved = optimistic::try_lookup(ctx_, view.current, next, key, out, out_string);
      if (moved.outcome == optimistic::Outcome::kValid) return moved.value;
      if (moved.outcome != optimistic::Outcome::kMoved) {
        wait_if_busy(moved, key, backoff, read_only_wait, next);
      } else if (ctx_.arrays().unchanged(view)) {
        throw_moved_without_migration(key);
      }
    }
  }

  // Entries with a home in [begin, end) of `slots`, one of `view`'s arrays. False when
  // the view went stale (the caller starts again from a fresh one).
  bool copy_home_range(const growth::ArrayView& view, const layout::SlotArray& slots, std::uint64_t begin,
                       std::uint64_t end, std::vector<KeyValue>* out) {
    return copy_checked(view, slots, begin, end, out, /*unmoved_group=*/std::nullopt);
  }

  // One home group of view.old, from whichever array holds it.
  bool copy_group(const growth::ArrayView& view, std::uint64_t group, std::vector<KeyValue>* out) {
    for (;;) {
      const bool moved = layout::is_moved(view.old.bucket(group).control.load(std::memory_order_acquire));
      if (moved) {
        return copy_checked(view, view.current, group * kNewSlotsPerGroup, group_end_in_new(view.current, group), out,
                            std::nullopt);
      }
      const std::size_t keep = out->size();
      if (!copy_checked(view, view.old, group * layout::kSlotsPerBucket, group_end_in_old(view.old, group), out, group)) {
        return false;
      }
      if (!layout::is_moved(last_copy_first_control_)) return true;
      out->resize(keep);  // it moved before we noted its bucket: copy it from the new array
    }
  }

 private:
  struct ExclusiveArray {
    layout::SlotArray slots;
    std::uint32_t generation;
    std::uint64_t first_unit;
  };
  void add_exclusive_array(const layout::SlotArray& slots, std::uint32_t generation) {
    if (!exclusive_arrays_.empty() && exclusive_arrays_.back().generation >= generation) return;
    exclusive_arrays_.push_back({slots, generation, exclusive_units_});
    exclusive_units_ += slots.bucket_count();
  }
  // The array and bucket of an ExclusiveScope unit.
  std::pair<const layout::SlotArray&, std::uint64_t> exclusive_unit(std::uint64_t unit) const noexcept {
    std::size_t i = exclusive_arrays_.size() - 1;
    while (i > 0 && unit < exclusive_arrays_[i].first_unit) --i;
    return {exclusive_arrays_[i].slots, unit - exclusive_arrays_[i].first_unit};
  }

  // Takes a bucket's sequence odd. A bucket held by a dead owner is taken over
  // (take_over_dead, returns true: it stays odd and becomes ours, so readers keep
  // waiting until the repair is done) or reported (NeedsRecovery).
  bool lock_bucket(const layout::SlotArray& slots, std::uint64_t bucket, bool take_over_dead) {
    std::atomic<std::uint64_t>& control = slots.bucket(bucket).control;
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
        if (control.compare_exchange_strong(current, taken_over_by(current, me_), std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
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

  void unlock_bucket(const layout::SlotArray& slots, std::uint64_t bucket) noexcept {
    std::atomic<std::uint64_t>& control = slots.bucket(bucket).control;
    control.store(unlocked_after(control.load(std::memory_order_relaxed)), std::memory_order_release);
  }

  // optimistic_read.hpp's Window: a locked (odd) bucket makes enter() fail; validation
  // also re-reads the growth word (an array punched out since must not validate).
  class ReadWindow {
   public:
    ReadWindow(TableContext& ctx, const layout::SlotArray& slots, const growth::ArrayView& view)
        : ctx_(ctx), slots_(slots), view_(view) {}
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
    bool still_valid() const { return noted_.unchanged(slots_) && ctx_.arrays().unchanged(view_); }
    bool moved(std::uint64_t bucket) const { return layout::is_moved(noted_.noted(bucket)); }
    std::uint64_t first_control() const { return noted_.noted(noted_.first()); }
    std::uint32_t busy_owner() const { return busy_owner_; }
    // The bucket that made enter() fail, and the control word it held then.
    std::uint64_t busy_bucket() const { return busy_bucket_; }
    std::uint64_t busy_control() const { return busy_control_; }

   private:
    TableContext& ctx_;
    const layout::SlotArray& slots_;
    const growth::ArrayView& view_;
    optimistic::NotedVersions noted_;
    std::uint32_t busy_owner_ = 0;
    std::uint64_t busy_bucket_ = 0;
    std::uint64_t busy_control_ = 0;
  };

  [[noreturn]] void throw_moved_without_migration(const HashedKey& key) {
    throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": corrupt table: the home bucket of slot " +
                                         std::to_string(ctx_.slots().home_of(key.hash)) +
                                         " of the current slot array is marked MOVED, but no migration is under way; run `shmht check`");
  }

  // After a busy attempt: pause, or find its holder dead (NeedsRecovery), or (read-only)
  // give up on a holder that does not move (kInUse). A torn one is simply tried again.
  void wait_if_busy(const optimistic::Attempt& attempt, const HashedKey& key, Backoff& backoff,
                    ReadOnlyWait& read_only_wait, const ReadWindow& window) {
    if (attempt.outcome != optimistic::Outcome::kBusy) return;
    if (attempt.busy_owner == me_) owner::throw_held_by_self(ctx_.region(), "a bucket of slot", ctx_.slots().home_of(key.hash));
    if (dead_.dead_after_pause(backoff, attempt.busy_owner)) throw NeedsRecovery{};
    if (ctx_.read_only()) read_only_wait.still_held(ctx_.region(), window.busy_bucket(), window.busy_control());
  }

  // An optimistic copy, then (read-write handles) a locked one when writers keep moving
  // under it. With `unmoved_group`, the caller needs the group's home bucket unmoved:
  // last_copy_first_control_ gets the control word the copy saw there.
  bool copy_checked(const growth::ArrayView& view, const layout::SlotArray& slots, std::uint64_t begin, std::uint64_t end,
                    std::vector<KeyValue>* out, std::optional<std::uint64_t> unmoved_group) {
    constexpr int kOptimisticAttempts = 8;
    const std::size_t keep = out->size();
    Backoff backoff;
    ReadOnlyWait read_only_wait;
    for (int attempt = 0; attempt < kOptimisticAttempts || ctx_.read_only(); ++attempt) {
      ReadWindow window(ctx_, slots, view);
      if (optimistic::try_copy_home_range(ctx_, slots, window, begin, end, out)) {
        last_copy_first_control_ = unmoved_group ? window.first_control() : 0;
        return true;
      }
      out->resize(keep);
      if (!ctx_.arrays().unchanged(view)) return false;
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
    WriteScope scope(*this, slots, begin);
    last_copy_first_control_ = slots.bucket(layout::SlotArray::bucket_of_slot(begin)).control.load(std::memory_order_relaxed);
    if (!ctx_.arrays().unchanged(view)) return false;
    locked_copy_home_range(ctx_, slots, begin, end, out, [&](std::uint64_t s) { scope.cover(s); });
    return true;
  }

  TableContext& ctx_;
  std::uint32_t me_;
  DeadOwners dead_;
  std::vector<ExclusiveArray> exclusive_arrays_;  // an ExclusiveScope's arrays, oldest first
  std::uint64_t exclusive_units_ = 0;
  std::uint64_t last_copy_first_control_ = 0;
};

}  // namespace

std::unique_ptr<EngineBase> make_seqlock_engine(TableContext& context) {
  return std::make_unique<ProtocolEngine<SeqlockProtocol>>(context);
}

}  // namespace shmht
