// engines/owner.hpp - who holds a lock word, whether they are still alive, and how to wait.
//
// OwnerId (32 bits, written into lock words so a waiter can tell a dead holder):
//   31            16 15             0
//   +---------------+---------------+
//   | generation    | entry + 1     |      0 = nobody
//   +---------------+---------------+
//   entry:      the holder's index in the attached-process table;
//   generation: that entry's generation when the holder attached, so a lock left by a dead
//               process is not mistaken for one held by the next process to reuse its entry.
#pragma once

#include <sched.h>

#include <cstdint>

#include "region.hpp"

namespace shmht {

namespace owner {

inline std::uint32_t id_of(const Region& region, std::uint32_t entry) noexcept {
  const std::uint32_t generation = region.entry(entry).generation.load(std::memory_order_relaxed);
  return ((generation & 0xFFFFu) << 16) | ((entry + 1) & 0xFFFFu);
}

// True unless `id` names an entry whose process is dead or which was re-attached since.
inline bool is_live(const Region& region, std::uint32_t id) noexcept {
  const std::uint32_t entry = (id & 0xFFFFu) - 1;
  if (entry >= region.fixed().max_processes) return false;  // garbage owner: treat as dead
  return region.entry_is_live(entry) && id_of(region, entry) == id;
}

}  // namespace owner

// Thrown inside a protocol when a waiter finds a lock held by a dead process. The engine
// releases what it holds, runs recovery (an exclusive scope repairs the table) and retries.
struct NeedsRecovery {};

// Spin, then yield: on this 2-vCPU machine a sleeping hand-off costs tens of microseconds
// and the holders' critical sections are far shorter, but a preempted holder (more
// processes than cores) needs the CPU back. pause() returns true every kCheckEvery rounds:
// the moment to check whether the holder is still alive (a /proc read, too costly to do
// on every round).
class Backoff {
 public:
  bool pause() noexcept {
    ++rounds_;
    if (rounds_ < kSpinRounds) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();
    }
    return rounds_ % kCheckEvery == 0;
  }

 private:
  static constexpr unsigned kSpinRounds = 64;
  static constexpr unsigned kCheckEvery = 1024;
  unsigned rounds_ = 0;
};

}  // namespace shmht
