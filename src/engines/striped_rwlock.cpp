// engines/striped_rwlock.cpp - the striped engine: reader-writer locks over stripes of buckets.
//
// DESIGN
//   The home slots are cut into S contiguous stripes (S = header.stripe_count, chosen when
//   the engine is set up, at most kMaxStripes = 64), by position: slot i of an array with
//   H home slots is in stripe i * S / H (the tail slots past H in the last). Every array
//   of a growing table maps onto the same stripes by hash, so a group move (growth.hpp),
//   which holds the old array's slots before the new array's, still takes stripes in one
//   ascending order: the first new home of an old group lies in the stripe of its first
//   old home. Stripe s has one writer word and,
//   for each attachment, one reader flag (layout/engine_area.hpp):
//
//     +64 + 64*s               writer word of stripe s (its own line): OwnerId, 0 = free
//     +64 + 64*kMaxStripes     reader flag lines, one 64-byte line per attachment entry:
//       + 64*e                   byte s = 1 while entry e holds stripe s shared
//
//   A reader writes only its own line, so readers never write a line another reader
//   writes, whichever stripes they read (a single shared reader count would cap read
//   scaling at one line's bandwidth). A writer pays instead: it scans the reader flags of
//   every attachment up to header.entry_high_water.
//   A probe or shift that crosses into the next stripe takes it too (cover), always in
//   address order, so no two lockers can wait for each other in a cycle.
//
// PROTOCOL (a Dekker handshake per stripe; seq_cst where the handshake needs it)
//   reader: flag = 1 (seq_cst); if writer == 0 (seq_cst): hold. Else flag = 0 and wait
//           for writer == 0, then try again.        release: flag = 0 (release)
//   writer: CAS writer 0 -> me (seq_cst); then wait until every reader flag of the stripe
//           is 0 (seq_cst loads).                    release: writer = 0 (release)
//   In the single total order of seq_cst operations either the reader's load sees the
//   writer or the writer's scan sees the flag, so they never both proceed. Release
//   stores pair with the acquire side of those loads, so what a writer wrote is visible
//   to the next reader, and a writer's writes come after every read it waited for.
//
// INVARIANTS
//   While a stripe's writer word is non-zero no reader flag of that stripe is set except
//   by readers that are about to back off. A writer holds [first, end) of stripes
//   contiguously; readers likewise, shared. Lock holders read records with plain loads:
//   no record reachable from a held stripe can be freed while it is held.
//
// A PROCESS THAT DIES MID-OPERATION
//   As a reader: its flag stays 1. A writer that has waited for it a while asks whether
//   that entry is still live (liveness.hpp) and, if not, clears the flag (nothing to
//   repair: readers write nothing). An entry re-attached by a new process clears its own
//   line when it starts this engine.
//   As a writer: the writer word keeps its OwnerId. A waiter that finds the owner dead
//   (owner.hpp: decided once per owner, never from an error) throws NeedsRecovery; ProtocolEngine then takes an ExclusiveScope, which takes every
//   stripe in order (a dead owner's by CAS from its id), runs repair_and_recount and
//   releases them all.
#include "engines/protocol_engine.hpp"
#include "layout/engine_area.hpp"

namespace shmht {

namespace {

using layout::kMaxStripes;
using layout::ReaderFlags;
using layout::WriterWord;

class StripedProtocol {
 public:
  explicit StripedProtocol(TableContext& context)
      : ctx_(context),
        stripes_(context.region().header().stripe_count.load(std::memory_order_acquire)),
        me_(owner::id_of(context.region(), context.entry_index())),
        writers_(reinterpret_cast<WriterWord*>(context.region().engine_area() + layout::kWriterWordsOffset)),
        readers_(reinterpret_cast<ReaderFlags*>(context.region().engine_area() + layout::kReaderFlagsOffset)),
        my_flags_(readers_[context.entry_index()]),
        dead_(context.region()) {
    if (stripes_ == 0 || stripes_ > kMaxStripes) {
      throw Error(ErrorCode::kCorrupt, context.region().path() + ": corrupt table: stripe count " +
                                           std::to_string(stripes_) + " is outside 1.." + std::to_string(kMaxStripes));
    }
    // A dead predecessor in this entry may have left flags set.
    for (auto& flag : my_flags_.held) flag.store(0, std::memory_order_release);
  }

  std::uint32_t stripe_of_slot(const layout::SlotArray& slots, std::uint64_t slot) const noexcept {
    if (slot >= slots.home_slots()) return stripes_ - 1;
    return static_cast<std::uint32_t>(static_cast<layout::Uint128>(slot) * stripes_ / slots.home_slots());
  }

  // Holds stripes [first, end) either shared or exclusive, growing upwards. A scope
  // opened while an `outer` one of the same operation is held starts past what that holds.
  template <bool kExclusive>
  class Scope {
   public:
    Scope(StripedProtocol& p, const layout::SlotArray& slots, std::uint64_t first_slot, const Scope* outer = nullptr)
        : p_(p), slots_(slots), first_(p.stripe_of_slot(slots, first_slot)), end_(first_) {
      if (outer != nullptr) first_ = end_ = std::max(first_, outer->end_);
      cover(first_slot);
      if constexpr (kExclusive) detail::fault_point(testing::FaultPoint::kAfterLock);
    }
    ~Scope() {
      for (std::uint32_t s = first_; s < end_; ++s) kExclusive ? p_.unlock_exclusive(s) : p_.unlock_shared(s);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

    void cover(std::uint64_t slot) {
      const std::uint32_t stripe = p_.stripe_of_slot(slots_, slot);
      while (end_ <= stripe) {
        kExclusive ? (void)p_.lock_exclusive(end_, false) : p_.lock_shared(end_);
        ++end_;
      }
    }

   private:
    StripedProtocol& p_;
    const layout::SlotArray slots_;
    std::uint32_t first_, end_;
  };
  using WriteScope = Scope<true>;
  using ReadScope = Scope<false>;

  // Every stripe, in address order; stripes left held by dead writers are taken over.
  using ExclusiveScope = AllUnitsScope<StripedProtocol>;
  std::uint64_t unit_count(bool /*first*/) const noexcept { return stripes_; }  // stripes cover every array
  TableContext& context() noexcept { return ctx_; }
  bool lock_unit(std::uint64_t stripe, bool take_over_dead) {
    return lock_exclusive(static_cast<std::uint32_t>(stripe), take_over_dead);
  }
  void unlock_unit(std::uint64_t stripe) noexcept { unlock_exclusive(static_cast<std::uint32_t>(stripe)); }

 private:
  void lock_shared(std::uint32_t stripe) {
    std::atomic<std::uint8_t>& flag = my_flags_.held[stripe];
    std::atomic<std::uint32_t>& writer = writers_[stripe].owner;
    for (;;) {
      flag.store(1, std::memory_order_seq_cst);
      if (writer.load(std::memory_order_seq_cst) == 0) return;
      flag.store(0, std::memory_order_release);  // let the writer proceed
      Backoff backoff;
      for (std::uint32_t holder; (holder = writer.load(std::memory_order_acquire)) != 0;) {
        if (holder == me_) owner::throw_held_by_self(ctx_.region(), "stripe", stripe);
        if (dead_.dead_after_pause(backoff, holder)) throw NeedsRecovery{};
      }
    }
  }

  void unlock_shared(std::uint32_t stripe) noexcept { my_flags_.held[stripe].store(0, std::memory_order_release); }

  // Takes the writer word, then waits for the stripe's readers. With take_over_dead a
  // word held by a dead owner becomes ours (returns true); without, meeting one throws
  // NeedsRecovery.
  bool lock_exclusive(std::uint32_t stripe, bool take_over_dead) {
    std::atomic<std::uint32_t>& writer = writers_[stripe].owner;
    bool took_over = false;
    Backoff backoff;
    for (std::uint32_t expected = 0; !writer.compare_exchange_weak(expected, me_, std::memory_order_seq_cst);) {
      if (expected == me_) owner::throw_held_by_self(ctx_.region(), "stripe", stripe);
      if (expected != 0 && dead_.dead_after_pause(backoff, expected)) {
        if (!take_over_dead) throw NeedsRecovery{};
        if (writer.compare_exchange_strong(expected, me_, std::memory_order_seq_cst)) {
          took_over = true;
          break;
        }
      }
      expected = 0;
    }
    wait_for_readers(stripe);
    return took_over;
  }

  void wait_for_readers(std::uint32_t stripe) {
    const std::uint32_t entries = std::min(ctx_.region().header().entry_high_water.load(std::memory_order_acquire),
                                           ctx_.fixed().max_processes);
    for (std::uint32_t e = 0; e < entries; ++e) {
      std::atomic<std::uint8_t>& flag = readers_[e].held[stripe];
      Backoff backoff;
      while (flag.load(std::memory_order_seq_cst) != 0) {
        if (backoff.pause() && !ctx_.region().entry_is_live(e)) {
          flag.store(0, std::memory_order_release);  // a dead reader's flag: nothing to repair
          break;
        }
      }
    }
  }

  void unlock_exclusive(std::uint32_t stripe) noexcept { writers_[stripe].owner.store(0, std::memory_order_release); }

  TableContext& ctx_;
  std::uint32_t stripes_;
  std::uint32_t me_;
  WriterWord* writers_;
  ReaderFlags* readers_;
  ReaderFlags& my_flags_;
  DeadOwners dead_;
};

}  // namespace

std::unique_ptr<EngineBase> make_striped_engine(TableContext& context) {
  return std::make_unique<ProtocolEngine<StripedProtocol>>(context);
}

void init_striped_state(Region& region, std::uint32_t stripes) {
  if (stripes == 0 || stripes > kMaxStripes) {
    throw Error(ErrorCode::kInvalidArgument, "stripes must be between 1 and " + std::to_string(kMaxStripes) +
                                                 ", got " + std::to_string(stripes));
  }
  // More stripes than home slots never helps: a stripe holds at least one.
  const auto home_slots = region.fixed().home_slots;
  region.header().stripe_count.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(stripes, home_slots)),
                                     std::memory_order_release);
}

}  // namespace shmht
