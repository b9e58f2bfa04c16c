// shmht/engine.hpp - the concurrency protocols a table can be opened with.
//
// Every engine works over the same region and slot layout (see src/layout/slot.hpp); the
// engine decides only how processes coordinate. One set of names is used everywhere:
// C++, the CLI's --engine, Python, the harness and result files.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace shmht {

enum class Engine : std::uint32_t {
  kGlobalLock = 1,         // "global":   one robust process-shared mutex
  kStripedRwLock = 2,      // "striped":  reader-writer locks over stripes of buckets
  kSeqlock = 3,            // "seqlock":  per-bucket sequence, optimistic readers
  kLockFreeRobinHood = 4,  // "lockfree": CAS-based Robin Hood
};

inline constexpr Engine kAllEngines[] = {Engine::kGlobalLock, Engine::kStripedRwLock,
                                         Engine::kSeqlock, Engine::kLockFreeRobinHood};

// The engine a new table gets when none is named, in every interface (C++ CreateOptions,
// `shmht create`, Python's shmht.default_engine()). Opening an existing table without
// naming one adopts the engine the table is active with instead. The seqlock: its readers
// write nothing, and it is the fastest engine on mixed loads in this project's runs.
inline constexpr Engine kDefaultEngine = Engine::kSeqlock;

// "global", "striped", "seqlock", "lockfree"; "unknown" for a value outside the enum.
std::string_view engine_name(Engine engine) noexcept;

// The inverse of engine_name(); nullopt for anything else.
std::optional<Engine> parse_engine(std::string_view name) noexcept;

// True when this build has an implementation of `engine`.
bool engine_is_built(Engine engine) noexcept;

}  // namespace shmht
