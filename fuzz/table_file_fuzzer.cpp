// table_file_fuzzer.cpp - libFuzzer entry point of fuzz target 1 (table_file.hpp): every
// input is the whole content of a table file.
//
// A real table is a few hundred KB, most of it zeros (an arena chunk is 256 KiB), and its
// first 128 bytes are covered by a checksum; blind byte flips would mostly land in unused
// arena bytes or fail the checksum. So the custom mutator below (libFuzzer's
// LLVMFuzzerCustomMutator) picks one part of the layout that the header names (header,
// process table, engine area, slot array, the used part of the arena, and the mask a peer
// XORs over the header after open: table_file.hpp) and lets libFuzzer's
// own mutator work on that window in place, then usually re-seals the checksum; now and
// then it mutates the input as a whole (lengths, truncation, anything). Inputs stay plain
// file bytes: a crash file is a table file, replayed as is.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "layout/engine_area.hpp"
#include "layout/header.hpp"
#include "table_file.hpp"

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

namespace {

using shmht::layout::ImmutableHeader;

struct Window {
  std::size_t begin, end;
};

// The parts of a table file worth mutating, as far as its (possibly damaged) header says.
std::vector<Window> windows_of(const std::uint8_t* data, std::size_t size) {
  namespace layout = shmht::layout;
  std::vector<Window> windows;
  auto add = [&](std::uint64_t begin, std::uint64_t bytes) {
    if (begin >= size || bytes == 0) return;
    windows.push_back({static_cast<std::size_t>(begin), static_cast<std::size_t>(std::min<std::uint64_t>(
                                                            size, begin + std::min<std::uint64_t>(bytes, size)))});
  };
  add(0, sizeof(layout::Header));
  add(shmht::fuzz::kPostOpenMaskOffset, shmht::fuzz::kPostOpenMaskBytes);
  if (size < sizeof(ImmutableHeader)) return windows;
  ImmutableHeader h{};
  std::memcpy(&h, data, sizeof h);
  const std::uint64_t processes = std::min<std::uint64_t>(h.max_processes, 8);
  add(h.process_table_offset, processes * sizeof(layout::ProcessEntry));
  add(h.engine_area_offset, layout::kReaderFlagsOffset + processes * sizeof(layout::ReaderFlags));
  for (std::uint64_t e = 0; e < std::min<std::uint64_t>(processes, 2); ++e) {
    // A descriptor's control line and its first words; the rest of its 37 KB is unused.
    add(h.engine_area_offset + layout::descriptors_offset(h.max_processes) + e * sizeof(layout::KcasDescriptor),
        offsetof(layout::KcasDescriptor, words) + 8 * sizeof(layout::KcasWord));
  }
  if (h.arena_offset > h.slot_array_offset) add(h.slot_array_offset, h.arena_offset - h.slot_array_offset);
  if (h.arena_offset < size) {
    std::size_t used = size;  // up to the last non-zero byte, and a little past it
    while (used > h.arena_offset && data[used - 1] == 0) --used;
    add(h.arena_offset, used - h.arena_offset + 64);
  }
  return windows;
}

void reseal(std::uint8_t* data, std::size_t size) {
  if (size < sizeof(ImmutableHeader)) return;
  ImmutableHeader h{};
  std::memcpy(&h, data, sizeof h);
  h.checksum = shmht::layout::header_checksum(h);
  std::memcpy(data, &h, sizeof h);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  shmht::fuzz::exercise_table_file(std::span<const std::uint8_t>(data, size));
  return 0;
}

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  std::minstd_rand rng(seed);
  const std::vector<Window> windows = windows_of(data, size);
  if (windows.empty() || rng() % 8 == 0) {
    size = LLVMFuzzerMutate(data, size, max_size);
  } else {
    const Window w = windows[rng() % windows.size()];
    const std::size_t length = w.end - w.begin;
    const std::size_t kept = LLVMFuzzerMutate(data + w.begin, length, length);
    std::fill(data + w.begin + kept, data + w.end, std::uint8_t{0});  // the window keeps its place
  }
  if (rng() % 8 != 0) reseal(data, size);
  return size;
}
