// fault_injection.hpp - the engines' side of shmht/testing.hpp. One relaxed load and a
// never-taken branch per fault point when no hook is installed.
#pragma once

#include <atomic>

#include "shmht/testing.hpp"

namespace shmht::detail {

extern std::atomic<testing::FaultHook> g_fault_hook;

inline void fault_point(testing::FaultPoint point) noexcept {
  if (auto hook = g_fault_hook.load(std::memory_order_relaxed)) [[unlikely]] hook(point);
}

}  // namespace shmht::detail
