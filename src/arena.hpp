// arena.hpp - variable-size records in the region, allocated without a global lock.
//
// SCHEME
//   Chunks: the arena is carved into chunks of header.chunk_bytes. A chunk is handed out
//   by a CAS on header.arena_end (the only shared allocation word, touched once per chunk,
//   i.e. once per thousands of records); the file is grown to cover it first.
//   Records: every attachment (ProcessEntry) owns one current chunk and bump-allocates
//   records from it, and owns one free list per size class. Freed records go on the
//   freeing attachment's list; allocation pops that list before bumping. Only the owner
//   touches its entry, so the hot path takes no lock and makes no shared-line RMW.
//   Steady overwrites (free one record, allocate one of the same class) therefore reuse
//   memory indefinitely without growing the file.
//
// SAFETY FOR READERS THAT TAKE NO LOCK
//   A record is freed only after the slot that pointed at it has been changed and the
//   engine's version covering that slot has moved (the engine calls free() after its
//   write section ends). A reader that loaded the old offset before the change may still
//   read the record while it is being reused; it reads it with atomic loads
//   (record_io.hpp), bounds-checks the lengths, and its version re-check fails, so it
//   retries. Memory is never unmapped or returned to the OS while the table exists, so
//   such a stale read never faults.
//
// CRASHES
//   Each free-list push/pop is a single store of the head after the link is written, so
//   a list is consistent at every instant. An attachment whose process died keeps its
//   chunk and lists; the next attachment to take its entry inherits both. A process that
//   dies between allocating a record and linking it (or between unlinking and freeing)
//   leaks that one record; `shmht check` reports the arena bytes not accounted for.
//
// KNOWN LIMITATION
//   Free lists are per attachment: memory freed by one process is reused by that process
//   (or its entry's heir), not by others. Balanced workloads (each process overwrites and
//   erases about as much as it inserts) reuse everything; a process that only erases
//   feeds nobody else.
#pragma once

#include <cstdint>

#include "region.hpp"

namespace shmht {

class Arena {
 public:
  Arena(Region& region, std::uint32_t entry_index) noexcept : region_(&region), entry_(&region.entry(entry_index)) {}

  // Offset of a new record of at least `record_bytes`. Throws kTableFull, kCorrupt.
  std::uint64_t allocate(std::uint64_t record_bytes);
  // Returns a record (of the given byte size) to this attachment's free list.
  void free(std::uint64_t offset, std::uint64_t record_bytes) noexcept;

 private:
  void take_new_chunk(std::uint64_t* cursor, std::uint64_t* end);

  Region* region_;
  layout::ProcessEntry* entry_;
};

}  // namespace shmht
