// table_file.hpp - fuzz target 1: arbitrary bytes as a table file.
//
// The bytes are written to a file of their own under /dev/shm, which is then opened the
// way every user of a table may open it: adopting its active engine, then switching to each
// engine in turn (each open may run cold-start recovery on whatever the bytes claim), and
// used: Table::active_engine, stats, size, for_each, get (both forms) and contains of keys
// the walk found and of keys that may be absent, an insert, an assign and an erase; and
// `check_table` runs with no handle open, after the first open and after the last. A
// shmht::Error is the only allowed outcome of any step; a crash, a hang, a sanitizer
// report or another exception is a library bug.
//
// A hostile peer also writes the header AFTER the others validated it. The file's first
// page ends in bytes no table uses, [sizeof(Header), kPageBytes): they are a mask that is
// XORed over the header's first kPostOpenMaskBytes (the immutable part and its checksum,
// the mutable words, most shared free-list heads) through the file, by a peer's own
// write, right after each open. All zeros, as in every real table, changes nothing.
#pragma once

#include <cstdint>
#include <span>

#include "layout/header.hpp"

namespace shmht::fuzz {

inline constexpr std::uint64_t kPostOpenMaskOffset = sizeof(layout::Header);
inline constexpr std::uint64_t kPostOpenMaskBytes = layout::kPageBytes - sizeof(layout::Header);
static_assert(kPostOpenMaskBytes >= offsetof(layout::Header, shared_free_heads) + 8,
              "the mask reaches every mutable word before the free lists, and at least one free-list head");

void exercise_table_file(std::span<const std::uint8_t> bytes);

}  // namespace shmht::fuzz
