// robust_mutex.hpp - a process-shared, robust pthread mutex that lives in the region.
//
// Robust: when the owner dies (SIGKILL included) the kernel walks its robust list and
// marks the futex OWNER_DIED; the next lock() returns kOwnerDied. The new owner must make
// the protected state consistent and then call mark_consistent(); if it unlocks without
// doing so the mutex becomes unusable (ENOTRECOVERABLE), which we report as corruption.
//
// Spinning: a blocking hand-off between two vCPUs costs tens of microseconds here, while
// the critical sections protected by these mutexes last well under one. lock() first
// spins on trylock for a bounded number of rounds (kSpinRounds, with a pause each) and
// only then sleeps in the kernel.
#pragma once

#include <pthread.h>

namespace shmht {

class RobustMutex {
 public:
  enum class Acquired { kClean, kOwnerDied };

  // Initialises the mutex in place (create time only).
  static void init(pthread_mutex_t* mutex);

  explicit RobustMutex(pthread_mutex_t* mutex) noexcept : mutex_(mutex) {}

  // Throws shmht::Error(kCorrupt) if the mutex is not recoverable.
  Acquired lock();
  void unlock() noexcept;
  // After kOwnerDied and repair: the protected state is consistent again.
  void mark_consistent() noexcept;

 private:
  static constexpr int kSpinRounds = 200;
  pthread_mutex_t* mutex_;
};

}  // namespace shmht
