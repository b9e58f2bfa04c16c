// loop_detector.hpp - noticing, after a few steps, that a walk of a list in shared memory
// goes round in a loop.
//
// The free lists (arena.hpp) live in the region, so any process that may write the file
// can link a record back to an earlier one. A walk bounded only by what the arena could
// hold (Region::max_records: up to ~5.5e11 records of 16 bytes at max_bytes 2^43) then
// takes minutes, under the admin lock in recovery. A walker passes each offset it
// reaches to LoopDetector::revisits, which answers true once the walk is back at an
// offset it passed before: Brent's algorithm (R. P. Brent, "An improved Monte Carlo
// factorization algorithm", BIT 20, 1980). It keeps one saved offset and compares each
// new one with it; after 1, 2, 4, 8, ... steps the saved offset moves to the current one.
// For a list of mu records before a loop of lambda records, that is fewer than
// 3 * (mu + lambda) + 4 steps (O(mu + lambda)), and no memory but four words.
//
//   offsets:  x0 -> x1 -> ... -> x(mu) -> ... -> x(mu+lambda-1) -> back to x(mu)
//   saved:    x0, then x2, x6, x14, ... x(2^k - 2)  (each compared with the next 2^k)
//   loop found when the current offset == saved; loop_length() = lambda then.
//
// The detector is the whole of the mechanism; each walker keeps its private bound
// (max_records) as a backstop and decides what a loop means to it: kCorrupt for a walk
// that must reach the end (hand-over), "the records before the loop" for a count
// (records_before_loop), a reported problem for `check`.
#pragma once

#include <cstdint>

namespace shmht {

class LoopDetector {
 public:
  // Call with each offset the walk reaches, in order, the first included; 0 (the end of
  // every list) is never passed. True when `offset` was reached before: a loop.
  bool revisits(std::uint64_t offset) noexcept {
    ++steps_;
    if (offset == saved_) return true;
    if (++since_saved_ == power_) {
      saved_ = offset;
      since_saved_ = 0;
      power_ *= 2;
    }
    return false;
  }

  // After revisits() returned true: the number of records in the loop (lambda).
  std::uint64_t loop_length() const noexcept { return since_saved_ + 1; }
  // Offsets passed so far (what tests bound).
  std::uint64_t steps() const noexcept { return steps_; }

 private:
  std::uint64_t saved_ = 0;  // 0 is no record's offset, so nothing matches before the first save
  std::uint64_t power_ = 1;
  std::uint64_t since_saved_ = 0;
  std::uint64_t steps_ = 0;
};

// The number of distinct records on a list that loops (mu + lambda), given its first
// offset, its loop's length (LoopDetector::loop_length) and next(offset), the link after
// a record: the second phase of Brent's algorithm, two walkers lambda apart meet at the
// loop's first record after mu steps. The list must be still (the caller's
// precondition for any count); next(0) must be 0, and `bound` ends the walk should the
// list not be still after all.
template <class Next>
std::uint64_t records_before_loop(std::uint64_t first, std::uint64_t loop_length, Next&& next, std::uint64_t bound) {
  std::uint64_t ahead = first;
  for (std::uint64_t i = 0; i < loop_length; ++i) ahead = next(ahead);
  std::uint64_t behind = first, mu = 0;
  while (behind != ahead && mu < bound) {
    behind = next(behind);
    ahead = next(ahead);
    ++mu;
  }
  return mu + loop_length;
}

}  // namespace shmht
