// layout/engine_area.hpp - the bytes of the engine area, per engine.
//
// global:   +0  pthread_mutex_t (robust, process-shared)
// striped:  +64 + 64*s              WriterWord of stripe s (s < kMaxStripes)
//           +64 + 64*kMaxStripes    ReaderFlags line of attachment entry e, + 64*e
// seqlock:  nothing (its state is the buckets' control words)
// lockfree: descriptors_offset(P) + sizeof(KcasDescriptor)*e   entry e's descriptors
//           (its state is also in the control words: a version per bucket)
#pragma once

#include <atomic>
#include <cstddef>
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

// The lock-free engine's per-attachment descriptors (engines/lockfree/kcas.hpp): one
// multi-word CAS and one RDCSS at a time each, reused in place, never freed.
//   kcas_state:   sequence << 2 | status; the sequence names one use of the descriptor
//   kcas_count:   words in use in words[]
//   rdcss_state:  sequence << 2 | status of the RDCSS (conditional install) in flight
//   rdcss_word, rdcss_expected, rdcss_kcas: its target word, expected value, and the
//                 KCAS reference it installs if that KCAS is still undecided
//   items_added, items_removed: this entry's lock-free item counters (mod 2^40; changed
//                 only inside a KCAS, so a finished operation is always counted)
//   words[i]:     offset (region byte offset of the word), expected, desired
inline constexpr std::uint32_t kMaxKcasWords = 1536;
struct KcasWord {
  std::atomic<std::uint64_t> offset, expected, desired;
};
struct alignas(64) KcasDescriptor {
  std::atomic<std::uint64_t> kcas_state;
  std::atomic<std::uint64_t> kcas_count;
  std::atomic<std::uint64_t> rdcss_state;
  std::atomic<std::uint64_t> rdcss_word;
  std::atomic<std::uint64_t> rdcss_expected;
  std::atomic<std::uint64_t> rdcss_kcas;
  std::atomic<std::uint64_t> items_added;
  std::atomic<std::uint64_t> items_removed;
  KcasWord words[kMaxKcasWords];
};
static_assert(sizeof(KcasWord) == 24, "three words per KCAS entry, no padding");
static_assert(offsetof(KcasDescriptor, words) == 64, "the control fields fill the first line");
static_assert(sizeof(KcasDescriptor) % 64 == 0, "descriptors never share a line");

constexpr std::uint64_t descriptors_offset(std::uint32_t max_processes) noexcept {
  return kReaderFlagsOffset + sizeof(ReaderFlags) * std::uint64_t{max_processes};
}

constexpr std::uint64_t engine_area_bytes(std::uint32_t max_processes) noexcept {
  const std::uint64_t bytes = descriptors_offset(max_processes) + sizeof(KcasDescriptor) * std::uint64_t{max_processes};
  return (bytes + 4095) / 4096 * 4096;
}
static_assert(descriptors_offset(1) % 64 == 0, "descriptors start on a line");
static_assert(engine_area_bytes(1) >= 64, "the global lock's mutex fits");

}  // namespace shmht::layout
