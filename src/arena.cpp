#include "arena.hpp"

#include <atomic>
#include <string>
#include <type_traits>

#include "fault_injection.hpp"
#include "loop_detector.hpp"
#include "record_io.hpp"
#include "shmht/error.hpp"

namespace shmht {
namespace {

using layout::ChunkHeader;

std::uint64_t* link_word(Region& region, std::uint64_t offset) { return region.at<std::uint64_t>(offset); }

// Owner-only read-modify-write of an entry counter: no other process writes it. Wraps
// rather than overflows, whatever a damaged file left there (layout::wrapping_add).
template <class T>
void add_relaxed(std::atomic<T>& counter, T delta) noexcept {
  using Unsigned = std::make_unsigned_t<T>;
  counter.store(static_cast<T>(static_cast<Unsigned>(counter.load(std::memory_order_relaxed)) + static_cast<Unsigned>(delta)),
                std::memory_order_relaxed);
}

// The largest size class whose records fit in `bytes` (a multiple of 16, at least 16).
unsigned largest_class_within(std::uint64_t bytes) noexcept {
  const unsigned cls = layout::size_class_of(std::min(bytes, layout::kMaxRecordBytes));
  return layout::class_bytes(cls) <= bytes ? cls : cls - 1;
}

constexpr std::uint64_t kRecordAlign = 16;  // class sizes and chunk record areas are multiples of 16
static_assert(layout::kLinearStep == kRecordAlign && sizeof(ChunkHeader) % kRecordAlign == 0,
              "a chunk's records and any tail of it stay 16-aligned, so tails cut into whole classes");

// Cuts [begin, end) (16-aligned) into records of the largest classes that fit, front to
// back, calling piece(offset, size_class) for each.
template <class Piece>
void cut_into_classes(std::uint64_t begin, std::uint64_t end, Piece&& piece) {
  while (end - begin >= kRecordAlign) {
    const unsigned cls = largest_class_within(end - begin);
    piece(begin, cls);
    begin += layout::class_bytes(cls);
  }
}

// Records on the free list starting at `first`, following links while they stay
// inside the mapped arena and 16-aligned. A list that loops is counted as the distinct
// records on it (those before the loop comes round again), found after a few steps
// (loop_detector.hpp); no more than the arena could ever hold in any case (a private
// bound, the backstop).
std::uint64_t count_free_list(Region& region, std::uint64_t first, unsigned size_class) {
  const std::uint64_t size = layout::class_bytes(size_class);
  const std::uint64_t max_records = region.max_records(size);
  // The link after a readable record; 0 (the end) after anything else.
  auto next = [&](std::uint64_t offset) -> std::uint64_t {
    if (offset == 0 || offset % kRecordAlign != 0 || !region.ensure_mapped(offset, size)) return 0;
    return std::atomic_ref<std::uint64_t>(*link_word(region, offset)).load(std::memory_order_relaxed);
  };
  LoopDetector loop;
  std::uint64_t records = 0;
  for (std::uint64_t offset = first;
       offset != 0 && records < max_records && offset % kRecordAlign == 0 && region.ensure_mapped(offset, size);
       offset = next(offset)) {
    if (loop.revisits(offset)) return records_before_loop(first, loop.loop_length(), next, max_records);
    ++records;
  }
  return records;
}

}  // namespace

void recount_free_lists(Region& region, std::uint32_t entry_index) {
  layout::ProcessEntry& entry = region.entry(entry_index);
  std::uint64_t bytes = 0;
  for (unsigned c = 0; c < layout::kSizeClassCount; ++c) {
    const std::uint64_t records = count_free_list(region, entry.free_heads[c].load(std::memory_order_relaxed), c);
    entry.free_counts[c].store(static_cast<std::uint32_t>(records), std::memory_order_relaxed);
    bytes += records * layout::class_bytes(c);
  }
  entry.free_bytes.store(bytes, std::memory_order_relaxed);
}

void recount_shared_free_lists(Region& region) {
  layout::Header& header = region.header();
  for (unsigned c = 0; c < layout::kSizeClassCount; ++c) {
    const std::uint64_t top = layout::shared_head_offset(header.shared_free_heads[c].load(std::memory_order_acquire));
    header.shared_free_counts[c].store(count_free_list(region, top, c), std::memory_order_relaxed);
  }
}

void Arena::corrupt(const std::string& why) const {
  throw Error(ErrorCode::kCorrupt, region_->path() + ": corrupt table: " + why + "; run `shmht check`");
}

std::uint64_t Arena::allocate(std::uint64_t record_bytes) {
  const unsigned cls = layout::size_class_of(record_bytes);
  const std::uint64_t size = layout::class_bytes(cls);

  const std::uint64_t head = entry_->free_heads[cls].load(std::memory_order_relaxed);
  if (head != 0) {
    if (head % 8 != 0 || !region_->ensure_mapped(head, size)) {
      corrupt("free list of size class " + std::to_string(cls) + " points outside the arena (" + std::to_string(head) + ")");
    }
    const std::uint64_t next = std::atomic_ref<std::uint64_t>(*link_word(*region_, head)).load(std::memory_order_relaxed);
    entry_->free_heads[cls].store(next, std::memory_order_relaxed);
    detail::fault_point(testing::FaultPoint::kFreeListChanged);
    add_relaxed<std::uint64_t>(entry_->free_bytes, -size);
    add_relaxed<std::uint32_t>(entry_->free_counts[cls], -1u);
    add_relaxed<std::int64_t>(entry_->live_bytes, static_cast<std::int64_t>(size));
    return head;
  }

  if (const std::uint64_t shared = take_shared(cls)) {
    add_relaxed<std::int64_t>(entry_->live_bytes, static_cast<std::int64_t>(size));
    return shared;
  }

  std::uint64_t cursor = entry_->chunk_cursor.load(std::memory_order_relaxed);
  std::uint64_t end = entry_->chunk_end.load(std::memory_order_relaxed);
  if (end != 0 && (cursor % kRecordAlign != 0 || end % kRecordAlign != 0)) {
    corrupt("attachment entry " + std::to_string(entry_index_) + " has a misaligned chunk cursor (" +
            std::to_string(cursor) + ", " + std::to_string(end) + ")");
  }
  // end < cursor: a holder died between storing the two (take_new_chunk): no room.
  const bool usable = end > cursor && end - cursor <= region_->fixed().chunk_bytes && region_->ensure_mapped(cursor, end - cursor);
  if (!usable || end - cursor < size) {
    if (usable) retire_tail(cursor, end);
    take_new_chunk(&cursor, &end);
  }
  entry_->chunk_cursor.store(cursor + size, std::memory_order_relaxed);
  add_relaxed<std::int64_t>(entry_->live_bytes, static_cast<std::int64_t>(size));
  return cursor;
}

void Arena::push_free(std::uint64_t offset, unsigned size_class) noexcept {
  // Link first, publish the head second: the list is consistent at every instant.
  std::atomic_ref<std::uint64_t>(*link_word(*region_, offset))
      .store(entry_->free_heads[size_class].load(std::memory_order_relaxed), std::memory_order_relaxed);
  entry_->free_heads[size_class].store(offset, std::memory_order_relaxed);
  add_relaxed<std::uint64_t>(entry_->free_bytes, layout::class_bytes(size_class));
  add_relaxed<std::uint32_t>(entry_->free_counts[size_class], 1u);
}

void Arena::free(std::uint64_t offset, std::uint64_t record_bytes) noexcept {
  const unsigned cls = layout::size_class_of(record_bytes);
  push_free(offset, cls);
  add_relaxed<std::int64_t>(entry_->live_bytes, -static_cast<std::int64_t>(layout::class_bytes(cls)));
  // Past a chunk's worth, everything goes to the shared stacks: one walk of the lists per
  // chunk's worth of frees, so the cost per free stays constant.
  if (entry_->free_bytes.load(std::memory_order_relaxed) > region_->fixed().chunk_bytes) {
    try {
      for (unsigned c = 0; c < layout::kSizeClassCount; ++c) hand_over(c);
    } catch (const Error&) {
      // A damaged list stays where it is; allocate() reports it when it gets there.
    }
  }
}

void Arena::hand_over(unsigned size_class) {
  const std::uint64_t size = layout::class_bytes(size_class);
  const std::uint64_t first = entry_->free_heads[size_class].load(std::memory_order_relaxed);
  if (first == 0) return;
  // Find the chain's last record, checking every link on the way.
  const std::uint64_t max_records = region_->max_records(size);
  LoopDetector loop;
  std::uint64_t last = first, count = 1;
  for (;;) {
    if (last % kRecordAlign != 0 || !region_->ensure_mapped(last, size)) {
      corrupt("free list of size class " + std::to_string(size_class) + " points outside the arena (" +
              std::to_string(last) + ")");
    }
    // A loop is found after a few steps (loop_detector.hpp); the count of what the arena
    // can hold, from private values, stays as the backstop (arena_end, which a peer can
    // write, once let a looping list be walked for ever).
    if (loop.revisits(last)) {
      corrupt("the free list of size class " + std::to_string(size_class) + " loops (record " + std::to_string(last) +
              " comes round again)");
    }
    const std::uint64_t next = std::atomic_ref<std::uint64_t>(*link_word(*region_, last)).load(std::memory_order_relaxed);
    if (next == 0) break;
    if (++count > max_records) {
      corrupt("the free list of size class " + std::to_string(size_class) + " loops (more records than the arena holds)");
    }
    last = next;
  }
  // Detach first: a crash before the push leaks the chain, never lists it twice.
  entry_->free_heads[size_class].store(0, std::memory_order_relaxed);
  add_relaxed<std::uint64_t>(entry_->free_bytes, -(count * size));
  entry_->free_counts[size_class].store(0, std::memory_order_relaxed);
  std::atomic<std::uint64_t>& head = region_->header().shared_free_heads[size_class];
  std::uint64_t seen = head.load(std::memory_order_acquire);
  do {
    std::atomic_ref<std::uint64_t>(*link_word(*region_, last)).store(layout::shared_head_offset(seen), std::memory_order_relaxed);
  } while (!head.compare_exchange_weak(seen, layout::shared_head(layout::shared_head_tag(seen) + 1, first),
                                       std::memory_order_release, std::memory_order_acquire));
  region_->header().shared_free_counts[size_class].fetch_add(count, std::memory_order_relaxed);
}

std::uint64_t Arena::take_shared(unsigned size_class) {
  const std::uint64_t size = layout::class_bytes(size_class);
  std::atomic<std::uint64_t>& head = region_->header().shared_free_heads[size_class];
  std::uint64_t seen = head.load(std::memory_order_acquire);
  for (std::uint64_t top; (top = layout::shared_head_offset(seen)) != 0;) {
    if (!region_->ensure_mapped(top, size)) {
      corrupt("the shared free list of size class " + std::to_string(size_class) + " points outside the arena (" +
              std::to_string(top) + ")");
    }
    // May be stale if another process popped `top` meanwhile; then the tag moved and the
    // CAS fails, so a stale link is never installed.
    const std::uint64_t next = std::atomic_ref<std::uint64_t>(*link_word(*region_, top)).load(std::memory_order_relaxed);
    if (head.compare_exchange_weak(seen, layout::shared_head(layout::shared_head_tag(seen) + 1, next),
                                   std::memory_order_acquire, std::memory_order_acquire)) {
      region_->header().shared_free_counts[size_class].fetch_sub(1, std::memory_order_relaxed);
      return top;
    }
  }
  return 0;
}

void Arena::retire_tail(std::uint64_t cursor, std::uint64_t end) noexcept {
  cut_into_classes(cursor, end, [&](std::uint64_t piece, unsigned cls) {
    // Cursor past the piece before the piece is listed: a crash in between leaks the
    // piece rather than handing it out twice.
    entry_->chunk_cursor.store(piece + layout::class_bytes(cls), std::memory_order_relaxed);
    push_free(piece, cls);
  });
}

void Arena::reclaim(std::uint64_t begin, std::uint64_t end) {
  if (begin % kRecordAlign != 0 || end % kRecordAlign != 0 || end < begin || !region_->ensure_mapped(begin, end - begin)) {
    corrupt("reclaiming [" + std::to_string(begin) + ", " + std::to_string(end) + "), which is not inside the arena");
  }
  cut_into_classes(begin, end, [&](std::uint64_t piece, unsigned cls) { push_free(piece, cls); });
  // The leaked records were counted live by the attachment that allocated them.
  add_relaxed<std::int64_t>(entry_->live_bytes, -static_cast<std::int64_t>(end - begin));
  // To the shared stacks: the checker that reclaims is about to detach.
  for (unsigned c = 0; c < layout::kSizeClassCount; ++c) hand_over(c);
}

void Arena::use_chunk(std::uint64_t start) {
  const std::uint64_t chunk = region_->fixed().chunk_bytes;
  if (!region_->ensure_mapped(start, chunk)) corrupt("new chunk at " + std::to_string(start) + " is not inside the file");
  // This attachment is about to fill the chunk: fault its pages in with one call rather
  // than one trap per 4 KiB page (a trap costs microseconds in a VM).
  region_->populate_for_write(start, chunk);
  // Cursor before end: a crash in between leaves end < cursor, which reads as "no room";
  // claiming_chunk is still set then, so the heir takes the chunk (inherit_interrupted_claim).
  entry_->chunk_cursor.store(start + sizeof(ChunkHeader), std::memory_order_relaxed);
  entry_->chunk_end.store(start + chunk, std::memory_order_relaxed);
  entry_->claiming_chunk.store(0, std::memory_order_release);
}

void Arena::take_new_chunk(std::uint64_t* cursor, std::uint64_t* end) {
  layout::Header& header = region_->header();
  const std::uint64_t chunk = region_->fixed().chunk_bytes;
  const std::uint64_t mine = layout::chunk_claim(entry_index_, entry_->generation.load(std::memory_order_relaxed));
  for (;;) {
    const std::uint64_t start = header.arena_end.load(std::memory_order_acquire);
    // arena_end is a shared word a peer may have overwritten: only a chunk boundary will do.
    const bool on_boundary = start >= region_->fixed().arena_offset && (start - region_->fixed().arena_offset) % chunk == 0;
    if (!on_boundary) corrupt("arena_end " + std::to_string(start) + " is not a chunk boundary");
    // Grow the file before claiming: a claimed chunk, and so arena_end, never lies past
    // the file. Lock-free, and a no-op once this process has the chunk mapped.
    region_->grow_file_to(start + chunk);
    if (!region_->ensure_file_mapped(start, sizeof(ChunkHeader))) {
      corrupt("the chunk at arena_end " + std::to_string(start) + " is not inside the file");
    }
    entry_->claiming_chunk.store(start, std::memory_order_release);
    std::uint64_t found = 0;
    const bool won = region_->at<ChunkHeader>(start)->claim.compare_exchange_strong(
        found, mine, std::memory_order_acq_rel, std::memory_order_acquire);
    // Won or lost, the chunk is claimed: move arena_end past it (for its claimant if not
    // us), or past every chunk of a slot array a grower claimed there (growth.cpp).
    const std::uint64_t claimed = !won && layout::is_array_claim(found) && layout::array_claim_chunks(found) != 0
                                      ? std::uint64_t{layout::array_claim_chunks(found)} * chunk
                                      : chunk;
    std::uint64_t expected = start;
    header.arena_end.compare_exchange_strong(expected, start + claimed, std::memory_order_acq_rel, std::memory_order_acquire);
    if (!won) continue;
    detail::fault_point(testing::FaultPoint::kAfterChunkClaim);
    use_chunk(start);
    *cursor = start + sizeof(ChunkHeader);
    *end = start + chunk;
    return;
  }
}

void Arena::inherit_interrupted_claim(std::uint32_t previous_generation) {
  const std::uint64_t start = entry_->claiming_chunk.load(std::memory_order_acquire);
  if (start == 0) return;
  const layout::ImmutableHeader& fixed = region_->fixed();
  const std::uint64_t chunk = fixed.chunk_bytes;
  const bool plausible = start >= fixed.arena_offset && (start - fixed.arena_offset) % chunk == 0 &&
                         region_->ensure_file_mapped(start, sizeof(ChunkHeader));
  const bool won = plausible && region_->at<ChunkHeader>(start)->claim.load(std::memory_order_acquire) ==
                                    layout::chunk_claim(entry_index_, previous_generation);
  if (!won || entry_->chunk_end.load(std::memory_order_relaxed) == start + chunk) {
    entry_->claiming_chunk.store(0, std::memory_order_release);  // lost, or it was fully taken
    return;
  }
  // The dead holder won the claim but never recorded the chunk: it is ours now. It may
  // not have moved arena_end past it either.
  std::uint64_t expected = start;
  region_->header().arena_end.compare_exchange_strong(expected, start + chunk, std::memory_order_acq_rel);
  const std::uint64_t cursor = entry_->chunk_cursor.load(std::memory_order_relaxed);
  const std::uint64_t end = entry_->chunk_end.load(std::memory_order_relaxed);
  if (end > cursor && end - cursor <= chunk && cursor % kRecordAlign == 0 && end % kRecordAlign == 0 &&
      region_->ensure_mapped(cursor, end - cursor)) {
    retire_tail(cursor, end);
  }
  use_chunk(start);
}

}  // namespace shmht
