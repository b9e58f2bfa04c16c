#include "robust_mutex.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include "shmht/error.hpp"

namespace shmht {
namespace {

[[noreturn]] void throw_pthread(const char* what, int rc) {
  if (rc == ENOTRECOVERABLE) {
    throw Error(ErrorCode::kCorrupt,
                std::string(what) + ": the lock was left unrecoverable by a process that died "
                                    "and was not repaired; recreate the table");
  }
  throw Error(ErrorCode::kSystem, std::string(what) + ": " + std::strerror(rc));
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  asm volatile("" ::: "memory");
#endif
}

}  // namespace

void RobustMutex::init(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_pthread("pthread_mutex_init", rc);
}

RobustMutex::Acquired RobustMutex::lock() {
  int rc = EBUSY;
  for (int round = 0; round < kSpinRounds && rc == EBUSY; ++round) {
    rc = pthread_mutex_trylock(mutex_);
    if (rc == EBUSY) cpu_relax();
  }
  if (rc == EBUSY) rc = pthread_mutex_lock(mutex_);
  if (rc == 0) return Acquired::kClean;
  if (rc == EOWNERDEAD) return Acquired::kOwnerDied;
  throw_pthread("locking a table mutex", rc);
}

void RobustMutex::unlock() noexcept { pthread_mutex_unlock(mutex_); }

void RobustMutex::mark_consistent() noexcept { pthread_mutex_consistent(mutex_); }

}  // namespace shmht
