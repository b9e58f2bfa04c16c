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
#pragma once

#include <cstdint>
#include <span>

namespace shmht::fuzz {

void exercise_table_file(std::span<const std::uint8_t> bytes);

}  // namespace shmht::fuzz
