// layout/engine_area.hpp - the bytes of the engine area, per engine.
//
// global:  +0  pthread_mutex_t (robust, process-shared)
// striped: +64 + 64*s              WriterWord of stripe s (s < kMaxStripes)
//          +64 + 64*kMaxStripes    ReaderFlags line of attachment entry e, + 64*e
// seqlock: nothing (its state is the buckets' control words)
#pragma once

#include <atomic>
#include <cstdint>

namespace shmht::layout {

inline constexpr std::uint32_t kMaxStripes = 64;  // one reader-flag byte per stripe in a 64-byte line

struct alignas(64) WriterWord {
  std::atomic<std::uint32_t> owner;  // OwnerId of the writer (engines/owner.hpp); 0 = free
};
struct alignas(64) ReaderFlags {
  std::atomic<std::uint8_t> held[kMaxStripes];  // held[s] = 1 while holding stripe s shared
};
static_assert(sizeof(WriterWord) == 64, "each writer word on its own line: stripes do not share lines");
static_assert(sizeof(ReaderFlags) == 64, "each attachment's reader flags are one line that only it writes");
static_assert(std::atomic<std::uint8_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free);

inline constexpr std::uint64_t kWriterWordsOffset = 64;
inline constexpr std::uint64_t kReaderFlagsOffset = kWriterWordsOffset + sizeof(WriterWord) * kMaxStripes;

constexpr std::uint64_t engine_area_bytes(std::uint32_t max_processes) noexcept {
  const std::uint64_t bytes = kReaderFlagsOffset + sizeof(ReaderFlags) * std::uint64_t{max_processes};
  return (bytes + 4095) / 4096 * 4096;
}
static_assert(engine_area_bytes(1) >= 64, "the global lock's mutex fits");

}  // namespace shmht::layout
