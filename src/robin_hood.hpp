// robin_hood.hpp - the probing discipline over the shared slot array (layout/slot.hpp).
//
// Mechanism only: these functions read and write slot words and know nothing of locks,
// records or processes. A caller that writes must hold exclusive access (lock, or odd
// sequences) to every bucket the operation touches. The functions that scan forward take
// a `touch(slot)` callback, called before each slot is first read: engines that lock
// bucket by bucket extend their locked range there (always ascending, so two writers can
// never wait for each other in a cycle). By the time plan_insert / erase_run_end return,
// every slot the write will change has been touched.
//
// PROBE (lookup and insertion point in one pass)
//   i = home, d = 0; stop at the first slot that is EMPTY or whose key is nearer its home
//   than d (dist(slot) < d): the key is absent and i is where it would go. A slot with
//   the same tag is checked with `matches` (a full key compare). Robin Hood ordering makes
//   the unsuccessful search stop early: keys of one home are contiguous.
//
// INSERT at (pos, d): the run [pos, e) up to the first EMPTY slot e moves right by one,
//   each word's dist + 1, written from e down to pos + 1; then pos gets the new word.
// ERASE at pos (backward shift): each following word with dist > 0 moves left by one,
//   dist - 1, written front to back; then the last vacated slot becomes EMPTY.
// Both orders keep every key present at every instant: an interrupted shift leaves one
// adjacent duplicate (word w at s, the same word with dist + 1 at s + 1), which
// repair_interrupted_shifts() removes with a backward shift at s + 1. That completes an
// interrupted erase and undoes an interrupted insert (whose caller never saw success).
#pragma once

#include <cstdint>

#include "fault_injection.hpp"
#include "layout/slot.hpp"

namespace shmht::robin_hood {

using layout::Slot;
using layout::SlotArray;

struct Probe {
  bool found;
  std::uint64_t slot;  // where the key is, or where it would be inserted
  std::uint64_t dist;  // slot - home
};

// The default touch: callers that already exclude everyone need no per-slot step.
struct NoTouch {
  void operator()(std::uint64_t) const noexcept {}
};

// Every scan below reads slot words through `load(slot)`; the overloads without it read
// them plainly. An engine that must finish an operation found in a word before it can
// read the word (lockfree), or that reads from a snapshot, passes its own.
template <class Matches, class Touch, class Load>
Probe probe(const SlotArray& slots, std::uint64_t home, std::uint16_t tag, Matches&& matches, Touch&& touch, Load&& load) {
  const std::uint64_t limit = slots.probe_limit();
  std::uint64_t d = 0;
  for (std::uint64_t i = home; i < limit; ++i, ++d) {
    touch(i);
    const std::uint64_t word = load(i);
    if (word == layout::kEmptySlot || Slot::dist_of(word) < d) return {false, i, d};
    // Only a word at distance d has this home (invariant 1): others are not compared. An
    // old array keeps moved groups' words (growth.hpp), whose records may be reused.
    if (Slot::tag_of(word) == tag && Slot::dist_of(word) == d && matches(word)) return {true, i, d};
  }
  return {false, limit, d};
}

template <class Matches, class Touch = NoTouch>
Probe probe(const SlotArray& slots, std::uint64_t home, std::uint16_t tag, Matches&& matches, Touch&& touch = {}) {
  return probe(slots, home, tag, matches, touch, [&](std::uint64_t s) { return slots.load(s); });
}

// The slots an insertion at (pos, dist) rewrites: [pos, last]. ok == false when the
// insertion would push some key past kMaxDist or run off the array (the table is full).
struct InsertPlan {
  bool ok;
  std::uint64_t pos, last, dist;
};

template <class Touch, class Load>
InsertPlan plan_insert(const SlotArray& slots, std::uint64_t pos, std::uint64_t dist, Touch&& touch, Load&& load) {
  if (dist > layout::kMaxDist) return {false, pos, pos, dist};
  const std::uint64_t limit = slots.probe_limit();
  for (std::uint64_t i = pos; i < limit; ++i) {
    touch(i);
    const std::uint64_t word = load(i);
    if (word == layout::kEmptySlot) return {true, pos, i, dist};
    if (Slot::dist_of(word) >= layout::kMaxDist) break;
  }
  return {false, pos, pos, dist};
}

template <class Touch = NoTouch>
InsertPlan plan_insert(const SlotArray& slots, std::uint64_t pos, std::uint64_t dist, Touch&& touch = {}) {
  return plan_insert(slots, pos, dist, touch, [&](std::uint64_t s) { return slots.load(s); });
}

inline void apply_insert(const SlotArray& slots, const InsertPlan& plan, std::uint64_t word) noexcept {
  for (std::uint64_t i = plan.last; i > plan.pos; --i) {
    const std::uint64_t moved = slots.load(i - 1);
    slots.store(i, Slot::with_dist(moved, Slot::dist_of(moved) + 1));
    if (i == plan.last) detail::fault_point(testing::FaultPoint::kMidShift);
  }
  slots.store(plan.pos, Slot::with_dist(word, plan.dist));
}

// Last slot a backward-shift erase at `pos` rewrites (it becomes EMPTY).
template <class Touch, class Load>
std::uint64_t erase_run_end(const SlotArray& slots, std::uint64_t pos, Touch&& touch, Load&& load) {
  const std::uint64_t limit = slots.probe_limit();
  std::uint64_t i = pos;
  while (i + 1 < limit) {
    touch(i + 1);
    const std::uint64_t next = load(i + 1);
    if (next == layout::kEmptySlot || Slot::dist_of(next) == 0) break;
    ++i;
  }
  return i;
}

template <class Touch = NoTouch>
std::uint64_t erase_run_end(const SlotArray& slots, std::uint64_t pos, Touch&& touch = {}) {
  return erase_run_end(slots, pos, touch, [&](std::uint64_t s) { return slots.load(s); });
}

inline void apply_erase(const SlotArray& slots, std::uint64_t pos, std::uint64_t last) noexcept {
  for (std::uint64_t i = pos; i < last; ++i) {
    const std::uint64_t next = slots.load(i + 1);
    slots.store(i, Slot::with_dist(next, Slot::dist_of(next) - 1));
    if (i == pos) detail::fault_point(testing::FaultPoint::kMidShift);
  }
  slots.store(last, layout::kEmptySlot);
}

// Removes the adjacent duplicates an interrupted shift leaves. Returns how many.
inline std::uint64_t repair_interrupted_shifts(const SlotArray& slots) noexcept {
  std::uint64_t repaired = 0;
  const std::uint64_t limit = slots.probe_limit();
  for (std::uint64_t i = 0; i + 1 < limit; ++i) {
    // Again at the same slot until its word is single: a word left in more than two
    // slots must lose every extra copy. Each erase empties one occupied slot, so on any
    // bytes at all (a corrupt file whose word names offset 0) this ends.
    for (;;) {
      const std::uint64_t here = slots.load(i);
      const std::uint64_t next = slots.load(i + 1);
      if (here == layout::kEmptySlot || next == layout::kEmptySlot || Slot::offset_of(here) != Slot::offset_of(next)) break;
      apply_erase(slots, i + 1, erase_run_end(slots, i + 1));
      ++repaired;
    }
  }
  return repaired;
}

// Calls visit(slot_index, word) for every key whose home slot is in [begin, end), each
// exactly once whatever shifts moved it, as long as the caller excludes writers from the
// slots it touches for the duration of the call.
template <class Visit, class Touch, class Load>
void visit_home_range(const SlotArray& slots, std::uint64_t begin, std::uint64_t end, Visit&& visit, Touch&& touch,
                      Load&& load) {
  const std::uint64_t limit = slots.probe_limit();
  for (std::uint64_t i = begin; i < limit; ++i) {
    touch(i);
    const std::uint64_t word = load(i);
    const bool empty = word == layout::kEmptySlot;
    const std::uint64_t home = empty ? i : i - Slot::dist_of(word);
    if (i >= end && (empty || home >= end)) break;  // past the run that spills over `end`
    if (!empty && home >= begin && home < end) visit(i, word);
  }
}

template <class Visit, class Touch = NoTouch>
void visit_home_range(const SlotArray& slots, std::uint64_t begin, std::uint64_t end, Visit&& visit, Touch&& touch = {}) {
  visit_home_range(slots, begin, end, visit, touch, [&](std::uint64_t s) { return slots.load(s); });
}

}  // namespace shmht::robin_hood
