// layout/header.hpp - the region's first page and the attached-process table.
//
// THE REGION (one file; every position is a byte offset from its start, never a pointer)
//
//   0                 4096            engine_area          slot_array        arena_offset
//   +-----------------+---------------+-------------------+-----------------+-------------...
//   | Header          | ProcessEntry  | engine area        | Bucket[]        | records, in
//   | (one page)      | [max_procs]   | (locks, per engine)| (slot.hpp)      | chunks -> grows
//   +-----------------+---------------+-------------------+-----------------+-------------...
//                                                                            ^ arena_end: the
//   The file is at least arena_end bytes long (whole pages); it grows as      chunk bump pointer
//   chunks are taken, with no lock (region.cpp grow_file_to), and never shrinks.
//
// The header has an immutable part, written once by create() and covered by a checksum,
// and a mutable part of atomics. open() validates every immutable field against the file
// size before it touches anything else (Region::open), and every process then reads the
// fixed fields from its own validated copy (Region::fixed()), never from the mapping.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "layout/size_classes.hpp"
#include "layout/slot.hpp"

namespace shmht::layout {

inline constexpr char kMagic[8] = {'s', 'h', 'm', 'h', 't', '-', 'v', '1'};
// Bump when the meaning of any byte in the region changes.
// 2: liveness by open-file-description locks (no pids, no admin mutex in the header),
//    ProcessEntry.attached and .claiming_chunk, a ChunkHeader at the start of every chunk,
//    shared free lists in the header.
// 5: liveness locks in the companion lock file (liveness.hpp), Header::rewrite_epoch, file_bytes
//    is a claimed length, shared free heads with a 25-bit tag, max_bytes at most 2^43;
//    lock-free: KCAS/RDCSS states keep the 43 sequence bits a reference carries (they
//    wrap), and a long shift may be left pending between operations (lockfree_robin_hood.cpp).
// 6: growth: Header::growth, migration_cursor, reclaimed_below and array_offsets; bit 63 of
//    every control word is MOVED; array claims among the chunks; the seqlock's owner is 31 bits.
inline constexpr std::uint32_t kLayoutVersion = 6;  // 4: XXH3 key hash (hash.hpp); 3: free counts per size class
inline constexpr std::uint64_t kPageBytes = 4096;
// Slot arrays a table can have over its life: each doubles the home slots, and 2^39 home
// slots (4.6 TiB of buckets) already pass the 8 TiB a slot word can address with records.
inline constexpr std::uint32_t kMaxGenerations = 40;

// Header.state values: create() writes kReady last, with release order.
inline constexpr std::uint32_t kStateInitializing = 0;
inline constexpr std::uint32_t kStateReady = 0x52454459;  // "REDY"

// Written once at create; checksummed; read-only afterwards.
struct ImmutableHeader {
  char magic[8];
  std::uint32_t layout_version;
  std::uint32_t abi_tag;  // abi_tag() below: catches a build with different struct sizes
  std::uint64_t hash_seed;
  std::uint64_t capacity;
  std::uint64_t home_slots;
  std::uint64_t bucket_count;
  std::uint32_t max_key_bytes;
  std::uint32_t max_value_bytes;
  std::uint32_t max_processes;
  std::uint32_t chunk_bytes;
  std::uint64_t process_table_offset;
  std::uint64_t engine_area_offset;
  std::uint64_t engine_area_bytes;
  std::uint64_t slot_array_offset;
  std::uint64_t arena_offset;
  std::uint64_t max_bytes;
  std::uint64_t created_unix_ns;
  std::uint64_t checksum;  // FNV-1a-64 of every byte above
};
static_assert(sizeof(ImmutableHeader) == 128, "immutable header: 16 words, fixed forever");
static_assert(offsetof(ImmutableHeader, layout_version) == 8, "version right after magic");
static_assert(offsetof(ImmutableHeader, checksum) == 120, "checksum is the last word");

// ImmutableHeader::checksum: FNV-1a-64 of the bytes before it. Written by create(),
// verified by open() (and recomputed by tools that edit a header on purpose: the fuzzer).
inline std::uint64_t header_checksum(const ImmutableHeader& h) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
  for (std::size_t i = 0; i < offsetof(ImmutableHeader, checksum); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  return hash;
}

struct Header {
  ImmutableHeader fixed;

  // --- mutable, line 2: which engine is active and whether create() finished ---
  alignas(64) std::atomic<std::uint32_t> state;
  std::atomic<std::uint32_t> active_engine;  // shmht::Engine value
  std::atomic<std::uint32_t> stripe_count;   // striped engine: stripes, set when it is set up
  // Odd while a cold start (engines/recovery.cpp) rewrites lock state and slots, which it
  // does with no lock a read-only handle could see; +1 before and +1 after (an odd value
  // left by a cold start that died stays odd until the next one ends). Read-only handles,
  // which are no attachments and so never make a cold start wait, read around it
  // (engines/read_only.cpp). 0 in a file of an older build: even, as it should be.
  std::atomic<std::uint32_t> rewrite_epoch;

  // --- line 3: the arena's chunk bump pointer and the file length ---
  alignas(64) std::atomic<std::uint64_t> arena_end;  // first byte never handed out
  // The largest file length any grower has claimed (a CAS to the larger value before it
  // reserves the space, region.cpp grow_file_to). Never below the file's real length;
  // above it while a grower is between its claim and its reservation (stopped or killed
  // there included), or after its reservation failed (ENOSPC). Nothing maps or trusts
  // bytes by it: whoever needs bytes asks the file's size (fstat) and reserves what is
  // missing itself. It only tells tests and tools how far growth was claimed.
  std::atomic<std::uint64_t> file_bytes;

  // One past the highest process-table entry ever attached: bounds the scans of writers
  // that must look at every attachment (striped engine's reader flags).
  std::atomic<std::uint32_t> entry_high_water;

  // --- line 4+: free records that any attachment may reuse (arena.cpp). An attachment
  // keeps what it frees in its own lists (no shared write on the hot path) until they
  // hold more than a chunk's worth, then hands a whole size class over here; an
  // allocation whose own list is empty takes from here before it bumps a chunk.
  //   shared_free_heads[c]: a Treiber stack of size class c, ABA-safe by its tag:
  //     63              39 38                                  0
  //     +-----------------+-------------------------------------+
  //     | tag (25)        | record offset / 16 (39)              |     0 = empty
  //     +-----------------+-------------------------------------+
  //   Records are 16-aligned and lie below max_bytes <= 2^43 (kMaxBytesRange), so 39 bits
  //   hold any offset and the other 25 are the tag, bumped (mod 2^25) by every change of
  //   the stack. What is left of ABA: a pop that read the head, then stalled while exactly
  //   a multiple of 2^25 = 33,554,432 changes hit that one class's stack and the same
  //   record came back on top, installs a stale link. At the 22-bit tag this replaced,
  //   4,194,304 changes did; wider would need a 128-bit CAS, which is not always lock-free.
  //   A free record's first word links to the next one's offset (0 ends the stack).
  //   shared_free_counts[c]: records on stack c (what `stat` reports per size class).
  //     Moved after the head's CAS, so a reader may see it lag by the operations in flight.
  alignas(64) std::atomic<std::uint64_t> shared_free_heads[kSizeClassCount];
  alignas(64) std::atomic<std::uint64_t> shared_free_counts[kSizeClassCount];

  // --- growth of the slot array (growth.hpp has the protocol) ---
  //   growth:           generation << 1 | migrating. Generation g's array has
  //                     fixed.home_slots << g home slots; while migrating, generation
  //                     g - 1's array still holds the groups not yet MOVED.
  //   migration_cursor: generation << 40 | next old group to claim (fetch_add).
  //   reclaimed_below:  the arrays of generations below this were punched out of the file.
  //   array_offsets[g]: where generation g's buckets start (g >= 1; generation 0 is
  //                     fixed.slot_array_offset); 0 until published, then never changed.
  alignas(64) std::atomic<std::uint64_t> growth;
  std::atomic<std::uint64_t> migration_cursor;
  std::atomic<std::uint64_t> reclaimed_below;
  alignas(64) std::atomic<std::uint64_t> array_offsets[kMaxGenerations];
};
inline constexpr unsigned kSharedOffsetBits = 39;  // offsets / 16 below 2^43 (max_bytes' limit)
inline constexpr unsigned kSharedTagBits = 64 - kSharedOffsetBits;
inline constexpr std::uint64_t kSharedOffsetMask = (std::uint64_t{1} << kSharedOffsetBits) - 1;
inline constexpr std::uint64_t shared_head(std::uint64_t tag, std::uint64_t offset) noexcept {
  return (tag << kSharedOffsetBits) | ((offset >> 4) & kSharedOffsetMask);  // a tag past 25 bits wraps
}
inline constexpr std::uint64_t shared_head_offset(std::uint64_t head) noexcept { return (head & kSharedOffsetMask) << 4; }
inline constexpr std::uint64_t shared_head_tag(std::uint64_t head) noexcept { return head >> kSharedOffsetBits; }
inline constexpr std::uint64_t kSharedMaxTag = (std::uint64_t{1} << kSharedTagBits) - 1;
static_assert((kMaxRecordOffset >> 4) <= kSharedOffsetMask,
              "any record offset a slot word can hold (so any below max_bytes) fits a shared head");
static_assert(shared_head_offset(shared_head(kSharedMaxTag, kMaxRecordOffset & ~std::uint64_t{15})) ==
                  (kMaxRecordOffset & ~std::uint64_t{15}) &&
              shared_head_tag(shared_head(kSharedMaxTag, kMaxRecordOffset & ~std::uint64_t{15})) == kSharedMaxTag,
              "the largest tag and the last 16-aligned offset round-trip together");
static_assert(shared_head_offset(shared_head(kSharedMaxTag + 1, 16)) == 16 && shared_head_tag(shared_head(kSharedMaxTag + 1, 16)) == 0,
              "a tag bumped past its width wraps to 0 and leaves the offset alone");
static_assert(kSharedTagBits >= 25, "the ABA window the essay above states");
static_assert(offsetof(Header, state) == 128, "mutable part starts on its own line");
static_assert(offsetof(Header, rewrite_epoch) == 140, "the rewrite epoch: in line 2, next to the active engine");
static_assert(offsetof(Header, arena_end) == 192, "arena bump pointer on its own line");
static_assert(offsetof(Header, shared_free_heads) == 256, "shared free lists start on their own line");
static_assert(offsetof(Header, shared_free_counts) % 64 == 0, "counts, bumped after each CAS, stay off the heads' lines");
static_assert(offsetof(Header, growth) % 64 == 0, "the growth word, read by every operation, on its own line");
static_assert(offsetof(Header, array_offsets) % 64 == 0 && offsetof(Header, array_offsets) == offsetof(Header, growth) + 64,
              "array offsets right after the growth line");
static_assert(sizeof(Header) <= kPageBytes, "the header fits in its page");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// One attachment (one open Table handle). An entry is also that attachment's allocator
// context: the chunk it bump-allocates from and its free lists, one per size class.
// The allocator state outlives the process: a later attachment that takes over the
// entry (free, or its owner dead) inherits the chunk and the free lists, so memory held
// by a dead process is reused, not leaked. Only the attached owner writes an entry;
// anyone may read it (liveness, counters).
//
// WHO IS ALIVE is not written here: entry i is live exactly while some open file
// description holds the OFD write lock on byte kEntryLockBase + i of the table's lock
// file (liveness.hpp: a companion only writers may open; an anonymous table's memfd). The kernel drops that lock when its holder's last descriptor closes:
// at exit (before the process is a zombie), at exec (O_CLOEXEC), and whatever PID
// namespace the holder runs in. `attached` records what the holder meant to do: 1 from
// attach to a clean detach. attached == 1 with no lock held is a dead attachment,
// whose locks and half-done writes must be recovered.
struct alignas(64) ProcessEntry {
  std::atomic<std::uint32_t> pid;          // the holder's pid in its own namespace: for messages only
  std::atomic<std::uint32_t> generation;   // +1 at every attach: tells this attachment from
                                           // an earlier one that held the same entry
  std::atomic<std::uint64_t> attached;     // 1 from attach until a clean detach
  std::atomic<std::int64_t> item_delta;    // items this entry added minus items it erased
  std::atomic<std::int64_t> live_bytes;    // record bytes allocated minus freed, via this entry
  std::atomic<std::uint64_t> free_bytes;   // record bytes sitting in this entry's free lists
  std::atomic<std::uint64_t> chunk_cursor; // next free byte in the current chunk
  std::atomic<std::uint64_t> chunk_end;    // end of the current chunk (0: none)
  std::atomic<std::uint64_t> claiming_chunk; // start of a chunk this entry is claiming (arena.cpp), 0: none
  // Head (region offset, 0 = empty) of a singly-linked list of free records per size
  // class; a free record's first word holds the next offset.
  std::atomic<std::uint64_t> free_heads[kSizeClassCount];
  // Records on free_heads[c]. 32 bits suffice: an entry hands its lists over once they
  // hold more than a chunk's worth of bytes (arena.cpp), and a chunk holds < 2^32 records.
  std::atomic<std::uint32_t> free_counts[kSizeClassCount];
  std::uint32_t reserved[8];  // pads the entry to whole cache lines
};
static_assert(offsetof(ProcessEntry, free_heads) == 64, "identity and counters in line 0");
static_assert(offsetof(ProcessEntry, free_counts) == 64 + 8 * kSizeClassCount, "counts right after the heads");
static_assert(sizeof(ProcessEntry) == 64 + 12 * kSizeClassCount + 32, "no hidden padding");
static_assert(sizeof(ProcessEntry) % 64 == 0, "entries never share a cache line");
static_assert(offsetof(ProcessEntry, attached) == 8 && offsetof(ProcessEntry, claiming_chunk) == 56,
              "field order is part of the layout version");
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

// The signed counters above (item_delta, live_bytes) are read from a file that a broken or
// hostile peer may have written: every sum or update of them wraps (two's complement), as
// the unsigned ones do, instead of overflowing (undefined behaviour).
constexpr std::int64_t wrapping_add(std::int64_t a, std::int64_t b) noexcept {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}
constexpr std::int64_t wrapping_sub(std::int64_t a, std::int64_t b) noexcept {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
static_assert(wrapping_add(INT64_MAX, 1) == INT64_MIN && wrapping_sub(0, INT64_MIN) == INT64_MIN);

// Advisory OFD lock bytes of the lock file (liveness.hpp). They name locks, not data:
// fcntl byte-range locks never block reads, writes or mappings of those bytes.
inline constexpr std::uint64_t kAdminLockByte = 0;  // attach, cold start, check's admin scope (never file growth)
inline constexpr std::uint64_t kEntryLockBase = 1;  // + entry index: that entry is live

// The first bytes of every chunk. A chunk is claimed by CAS of `claim` from 0 to the
// claimant's ChunkClaim before arena_end moves past it (arena.cpp): whoever inherits a
// dead entry can then tell whether the chunk it was claiming became its own.
struct ChunkHeader {
  std::atomic<std::uint64_t> claim;  // (entry + 1) << 32 | entry generation
  std::uint64_t reserved;            // keeps records 16-aligned
};
static_assert(sizeof(ChunkHeader) == 16, "records start 16 bytes into a chunk, on a 16-byte boundary");
constexpr std::uint64_t chunk_claim(std::uint32_t entry, std::uint32_t generation) noexcept {
  return (std::uint64_t{entry + 1} << 32) | generation;
}
static_assert(chunk_claim(0, 0) != 0, "a claimed chunk never reads as unclaimed");
// A slot array takes several consecutive chunks (growth.cpp): its first chunk's claim is
//   63  62            32 31                 0
//   +--+---------------+--------------------+
//   | 1| generation    | chunks it spans    |
//   +--+---------------+--------------------+
// so a chunk claimer that loses the race at that chunk moves arena_end past all of them.
inline constexpr std::uint64_t kArrayClaimBit = std::uint64_t{1} << 63;
constexpr std::uint64_t array_claim(std::uint32_t generation, std::uint32_t chunks) noexcept {
  return kArrayClaimBit | (std::uint64_t{generation} << 32) | chunks;
}
constexpr bool is_array_claim(std::uint64_t claim) noexcept { return (claim & kArrayClaimBit) != 0; }
constexpr std::uint32_t array_claim_chunks(std::uint64_t claim) noexcept { return static_cast<std::uint32_t>(claim); }
constexpr std::uint32_t array_claim_generation(std::uint64_t claim) noexcept {
  return static_cast<std::uint32_t>(claim >> 32) & 0x7FFFFFFFu;
}
static_assert(!is_array_claim(chunk_claim(4095, 0xFFFFFFFFu)), "a chunk claim never reads as an array claim");
static_assert(array_claim_chunks(array_claim(3, 17)) == 17 && array_claim_generation(array_claim(3, 17)) == 3);
// A slot array's buckets start this far into its first chunk: past the ChunkHeader, on a line.
inline constexpr std::uint64_t kArrayLeadBytes = 64;

// A record in the arena: 8-byte aligned, its size rounded up to its size class.
struct RecordHeader {
  std::uint32_t key_bytes;
  std::uint32_t value_bytes;
};
static_assert(sizeof(RecordHeader) == 8, "record payload starts 8 bytes in");

// Changes whenever a shared struct changes size; stored in the header.
constexpr std::uint32_t abi_tag() noexcept {
  return static_cast<std::uint32_t>(sizeof(ImmutableHeader)) ^
         (static_cast<std::uint32_t>(sizeof(Header)) << 8) ^
         (static_cast<std::uint32_t>(sizeof(ProcessEntry)) << 16) ^
         (static_cast<std::uint32_t>(sizeof(pthread_mutex_t)) << 24) ^ kSizeClassCount ^
         (static_cast<std::uint32_t>(sizeof(ChunkHeader)) << 4);
}

}  // namespace shmht::layout
