// engines/owner.hpp - who holds a lock word, whether they can still act, and how to wait.
//
// OwnerId (31 bits, written into lock words so a waiter can tell a dead holder; bit 31
// stays 0 so that the seqlock can keep an owner and a MOVED bit in one control word):
//   31 30         16 15             0
//   +-+-------------+---------------+
//   |0| generation  | entry + 1     |      0 = nobody
//   +-+-------------+---------------+
//   entry:      the holder's index in the attached-process table;
//   generation: the low 15 bits of that entry's generation when the holder attached, so a
//               lock left by a dead attachment is not mistaken for one held by the next
//               attachment of the same entry. The 15 bits may wrap; that is harmless
//               because an entry whose holder died is reused only after everything the
//               dead holder held was recovered (Region::attach: cold start, or TableImpl
//               running an exclusive scope on inheriting a dead entry), so no lock word
//               names a stale holder whose generation could come round again.
//
// DEAD, ONCE PER OWNER
//   An owner is dead when its entry was re-attached since (generation differs) or nobody
//   holds the entry's liveness lock (liveness.hpp; a failed query means alive). Death is
//   final for an (entry, generation) pair, so each handle remembers the last few dead
//   owners it found: after a process dies holding a hundred thousand buckets, the first
//   costs one query and the rest cost a memory compare each (recovery is memory work,
//   not one wait per bucket).
#pragma once

#include <sched.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include "liveness.hpp"
#include "region.hpp"
#include "shmht/error.hpp"

namespace shmht {

namespace owner {

inline constexpr std::uint32_t kGenerationMask = 0x7FFFu;

inline std::uint32_t entry_of(std::uint32_t id) noexcept { return (id & 0xFFFFu) - 1; }

inline std::uint32_t id_of(const Region& region, std::uint32_t entry) noexcept {
  const std::uint32_t generation = region.entry(entry).generation.load(std::memory_order_relaxed);
  return ((generation & kGenerationMask) << 16) | ((entry + 1) & 0xFFFFu);
}
static_assert(((kGenerationMask << 16) | 0xFFFFu) == 0x7FFFFFFFu, "an OwnerId never sets bit 31");

// A lock word that names the asking attachment itself, which holds no such lock: only a
// corrupt or hostile file does that, and waiting for ourselves would never end.
[[noreturn]] inline void throw_held_by_self(const Region& region, const char* what, std::uint64_t index) {
  throw Error(ErrorCode::kCorrupt, region.path() + ": corrupt table: " + what + " " + std::to_string(index) +
                                       " is marked held by this attachment, which never took it; run `shmht check`");
}

}  // namespace owner

// Spin, then yield: on this 2-vCPU machine a sleeping hand-off costs tens of microseconds
// and the holders' critical sections are far shorter, but a preempted holder (more
// processes than cores) needs the CPU back. pause() returns true when it is time to ask
// whether the holder is still alive (one fcntl, cheap next to a wait but not free): once
// the spinning is over, then every kCheckEvery rounds.
class Backoff {
 public:
  bool pause() noexcept {
    ++rounds_;
    if (rounds_ < kSpinRounds) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      return false;
    }
    sched_yield();
    return (rounds_ - kSpinRounds) % kCheckEvery == 0;
  }

 private:
  static constexpr unsigned kSpinRounds = 64;
  static constexpr unsigned kCheckEvery = 256;
  unsigned rounds_ = 0;
};

// Decides whether the owner named in a lock word is dead; remembers those found dead.
class DeadOwners {
 public:
  explicit DeadOwners(const Region& region) noexcept : region_(region) {}

  // Memory only: `id` was found dead before and its entry has not been re-attached since.
  bool known_dead(std::uint32_t id) const noexcept {
    for (const Known& k : known_) {
      if (k.id == id && generation_of(id) == k.generation) return true;
    }
    return false;
  }

  // One round of waiting for `id`: true when it is dead, asked at once if it is known
  // dead, else only when `backoff` says it is time (so a live holder costs no syscall).
  bool dead_after_pause(Backoff& backoff, std::uint32_t id) noexcept {
    return known_dead(id) || (backoff.pause() && is_dead(id));
  }

  // True when `id` can never act again on what it holds. May ask the kernel.
  bool is_dead(std::uint32_t id) noexcept {
    const std::uint32_t entry = owner::entry_of(id);
    if (entry >= region_.fixed().max_processes) return true;  // names no entry: nobody can release it
    if (known_dead(id)) return true;
    const std::uint32_t generation = generation_of(id);
    const bool dead = (generation & 0xFFFFu) != (id >> 16) || !region_.entry_is_live(entry);
    if (dead) {
      known_[next_] = {id, generation};
      next_ = (next_ + 1) % known_.size();
    }
    return dead;
  }

 private:
  struct Known {
    std::uint32_t id = 0;  // 0 never appears in a held lock word
    std::uint32_t generation = 0;
  };
  std::uint32_t generation_of(std::uint32_t id) const noexcept {
    const std::uint32_t entry = owner::entry_of(id);
    if (entry >= region_.fixed().max_processes) return 0;
    return region_.entry(entry).generation.load(std::memory_order_acquire);
  }

  const Region& region_;
  std::array<Known, 8> known_{};
  std::size_t next_ = 0;
};

// How long a read-only handle waits on one holding of a lock word. It can recover
// nothing, and it cannot always tell a dead holder from a stopped one: one that may not
// open the lock file judges by the pid the holder's entry names, and a writer in another
// pid namespace (its pid 1 is init here) or a reused pid keeps a dead writer "alive"
// (Region::may_be_alive_by_pid); a stopped writer is alive to every test. So once the
// same lock word (same sequence, same owner: not a live writer taking it again and
// again) has stayed held for liveness::kAdminLockWait, it gives up with kInUse instead
// of spinning for ever. Writers never use it: they can ask the lock file, and recover.
class ReadOnlyWait {
 public:
  // At each pause on `word`, the control word of bucket `bucket`.
  void still_held(const Region& region, std::uint64_t bucket, std::uint64_t word) {
    const auto now = std::chrono::steady_clock::now();
    if (!waiting_ || bucket != bucket_ || word != word_) {
      waiting_ = true;
      bucket_ = bucket;
      word_ = word;
      since_ = now;
      return;
    }
    if (now - since_ < liveness::kAdminLockWait) return;
    throw Error(ErrorCode::kInUse, region.path() + ": a writer has held bucket " + std::to_string(bucket) + " for over " +
                                       std::to_string(liveness::kAdminLockWait.count()) +
                                       " s; it may be stopped or dead; a read-only handle cannot tell which (try "
                                       "again later; a read-write open recovers what a dead writer left)");
  }

 private:
  bool waiting_ = false;
  std::uint64_t bucket_ = 0;
  std::uint64_t word_ = 0;
  std::chrono::steady_clock::time_point since_{};
};

// Thrown inside a protocol when a waiter finds a lock held by a dead process. The engine
// releases what it holds, runs recovery (an exclusive scope repairs the table) and retries.
struct NeedsRecovery {};

}  // namespace shmht
