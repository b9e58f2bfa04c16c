// shmht/options.hpp - what a caller chooses when creating or opening a table.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "shmht/engine.hpp"

namespace shmht {

// Slots after the last home slot (layout/slot.hpp): probes never wrap, so a key whose home
// is near the end lives there. They let more items fit than there are home slots, so the
// load factor (items / home slots, Stats::load_factor) can pass 1.
inline constexpr std::uint64_t kOverflowSlots = 255;

// Fixed when the table is created; recorded in the header.
struct CreateOptions {
  // Items the table must hold. The slot array is sized so that `capacity` items fit at a
  // load factor of at most 0.85; it never resizes. More items may fit: an insert fails
  // with kTableFull only when no free slot lies within the probe-distance limit (254) of
  // the key's home, or when the arena would pass max_bytes.
  std::uint64_t capacity = 1u << 20;
  std::uint32_t max_key_bytes = 1024;
  std::uint32_t max_value_bytes = 64 * 1024;
  // Upper bound of the file (header + slots + arena). The file itself grows on demand;
  // this only bounds it and the virtual address range each process reserves.
  std::uint64_t max_bytes = std::uint64_t{64} << 30;
  // Attached-process table entries (each also carries that process's allocator state).
  std::uint32_t max_processes = 128;
  // Permission bits of a file-backed table.
  mode_t mode = 0600;
  // The engine the creating process attaches with.
  Engine engine = kDefaultEngine;
  // Striped engine only: how many reader-writer locks cover the buckets (1..64).
  std::uint32_t stripes = 64;
};

struct OpenOptions {
  // The engine to attach with. Unset: the table's active engine (the one its live
  // attachments use, or used last). Set to another engine: allowed only while no live
  // process is attached, and switches the table to it (kEngineMismatch otherwise).
  std::optional<Engine> engine;
  // Striped engine only, and only when this open switches the table to it (no live
  // process attached): the stripe count (1..64). Otherwise the recorded count is kept.
  std::uint32_t stripes = 64;
  // Open for reading only: the file is opened O_RDONLY and mapped read-only, so a table
  // whose file the caller may only read (mode 0644, another user's) can be read. Only
  // for tables active with an engine whose readers never write to shared memory
  // (seqlock); kInvalidArgument names the reason otherwise. Writes through such a handle
  // throw kPermissionDenied; so does meeting a lock left by a dead writer (recovering it
  // needs write access: open the table read-write once). A read-only handle does not
  // attach: it is not listed among the table's processes. `engine` must be unset or
  // the active engine.
  bool read_only = false;
};

struct RemoveOptions {
  // Remove the table even while live processes are attached (they keep using the
  // removed file), or when its header is damaged.
  bool force = false;
};

}  // namespace shmht
