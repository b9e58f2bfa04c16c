// arena.hpp - variable-size records in the region, allocated without a global lock.
//
// SCHEME
//   Chunks: the arena is carved into chunks of header.chunk_bytes, each starting with a
//   16-byte ChunkHeader (layout/header.hpp). A chunk is taken in two steps: the taker
//   CASes the claim word of the chunk at header.arena_end from 0 to its (entry,
//   generation), then moves arena_end past it; anyone who finds the chunk at arena_end
//   already claimed moves arena_end past it for the claimant (so a claimant that stalls
//   or dies never blocks the others) and tries the next. Every chunk below arena_end is
//   claimed. The file is grown to cover a chunk before it is claimed, by whoever is about
//   to claim it and finds the file short (Region::grow_file_to: lock-free, so a process
//   stopped while growing the file blocks nobody either).
//   Records: every attachment (ProcessEntry) owns one current chunk and bump-allocates
//   records from it, and owns one free list per size class. Freed records go on the
//   freeing attachment's list; allocation pops that list before bumping. When a record
//   does not fit in what is left of the chunk, the rest is cut into free records of the
//   largest classes that fit (retire_tail), so no byte of a chunk is lost. Only the
//   owner touches its entry, so the hot path takes no lock and makes no shared-line RMW.
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
//   chunk and lists; the next attachment to take its entry inherits both. A chunk taker
//   writes the chunk's start into entry.claiming_chunk before it claims, and clears it
//   once entry.chunk_cursor/chunk_end describe the chunk: the heir of a dead entry
//   (inherit_interrupted_claim) finds the claim word naming the dead holder and makes the
//   chunk its own, so a death between claim and cursor leaks nothing. A process that
//   dies between allocating a record and linking it (or between unlinking and freeing)
//   leaks that one record; `shmht check` reports the arena bytes not accounted for.
//
// MEMORY FREED BY ONE PROCESS, REUSED BY ANOTHER
//   An attachment's own lists are a cache. When they hold more than a chunk's worth of
//   bytes, each list is handed over whole to the header's shared stack of its class (one
//   CAS per chain); an allocation whose own list is
//   empty pops one record there before it bumps its chunk. So a process that only erases
//   feeds the ones that insert, and the file stops growing. The stacks are Treiber
//   stacks whose heads carry a 25-bit tag bumped by every change, so a pop that read a
//   head, stalled while the top record was popped and pushed back, fails its CAS instead
//   of installing a stale link (ABA), unless exactly a multiple of 2^25 changes came in
//   between (layout/header.hpp states the window). Hand-over detaches the chain from the attachment's
//   list before pushing it: a process killed in between leaks that batch (at most a
//   chunk's worth) rather than ever handing a record out twice. Boost.Lockfree's stack
//   was not used: its nodes are allocated by its own freelist (pointers, a process-local
//   allocator); a stack of records that are already in the region needs its links in
//   the records, by offset, which is what this is.
//
// WALKS END
//   A list that loops (a broken or hostile peer) is noticed after a few steps: every walk
//   of a list in shared memory (hand-over, recount, `check`) passes each record to a
//   LoopDetector (loop_detector.hpp: Brent's algorithm, O(mu + lambda) steps for mu
//   records before a loop of lambda), and ends in kCorrupt (hand-over), a count of the
//   distinct records (recount) or a reported problem (`check`). As a backstop each walk
//   also stops after as many records as the arena could ever hold of that class,
//   computed from this process's own validated max_bytes (Region::max_records), never
//   from a shared word. That bound alone once let a 2-record cycle cost ~5.5e11 steps
//   (about 20 minutes, under the admin lock) at max_bytes 2^43.
#pragma once

#include <cstdint>

#include "region.hpp"

namespace shmht {

// An attachment changes a free list and then its counters (free_bytes, free_counts) in
// separate stores, and a shared stack and then its counter, so a process killed in
// between leaves a counter off by one record. These reset the counters from the lists;
// each needs the lists it walks to be still: recount_free_lists an entry nobody else
// uses (the heir of a dead holder, or cold start), recount_shared_free_lists a table
// with no other process attached (cold start). A list that leaves the arena is counted
// up to that point; `check` reports it.
void recount_free_lists(Region& region, std::uint32_t entry);
void recount_shared_free_lists(Region& region);

class Arena {
 public:
  Arena(Region& region, std::uint32_t entry_index) noexcept
      : region_(&region), entry_index_(entry_index), entry_(&region.entry(entry_index)) {}

  // Offset of a new record of at least `record_bytes`. Throws kTableFull, kCorrupt.
  std::uint64_t allocate(std::uint64_t record_bytes);
  // Returns a record (of the given byte size) to this attachment's free list.
  void free(std::uint64_t offset, std::uint64_t record_bytes) noexcept;

  // On attaching to an entry whose previous holder (of `previous_generation`) may have
  // died while taking a chunk: makes that chunk this attachment's if the claim was won.
  void inherit_interrupted_claim(std::uint32_t previous_generation);

  // Puts [begin, end) of the arena, which no slot, free list or chunk cursor covers
  // (records leaked by a crashed writer), on the shared free lists, cut into records of
  // the largest classes that fit. Only `check --repair` calls it (check.cpp), with every
  // other attachment dead and new ones kept out, because a live writer's allocated but
  // not yet linked record looks exactly the same.
  void reclaim(std::uint64_t begin, std::uint64_t end);

 private:
  void take_new_chunk(std::uint64_t* cursor, std::uint64_t* end);
  // Cuts [cursor, end) of the current chunk into free records; leaves the chunk empty.
  void retire_tail(std::uint64_t cursor, std::uint64_t end) noexcept;
  void push_free(std::uint64_t offset, unsigned size_class) noexcept;
  // Moves this attachment's whole list of `size_class` onto the shared stack.
  void hand_over(unsigned size_class);
  // A record of `size_class` from the shared stack, or 0 if it is empty.
  std::uint64_t take_shared(unsigned size_class);
  void use_chunk(std::uint64_t start);
  [[noreturn]] void corrupt(const std::string& why) const;

  Region* region_;
  std::uint32_t entry_index_;
  layout::ProcessEntry* entry_;
};

}  // namespace shmht
