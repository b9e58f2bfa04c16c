// fault_injection.hpp - the engines' side of shmht/testing.hpp. One relaxed load and a
// never-taken branch per fault point when no hook is installed.
#pragma once

#include <atomic>

#include "shmht/testing.hpp"

namespace shmht::detail {

extern std::atomic<testing::FaultHook> g_fault_hook;

// Not noexcept: a test's hook may throw at the lock-free KCAS points (testing.hpp); at a
// point inside a noexcept function a throw ends the process, as it should.
inline void fault_point(testing::FaultPoint point) {
  if (auto hook = g_fault_hook.load(std::memory_order_relaxed)) [[unlikely]] hook(point);
}

extern std::atomic<testing::Flaw> g_flaw;

inline bool flaw_direct_install_of_any_word() noexcept {
  return g_flaw.load(std::memory_order_relaxed) == testing::Flaw::kDirectInstallOfAnyWord;
}

}  // namespace shmht::detail
