#include "arena.hpp"

#include <atomic>
#include <string>

#include "record_io.hpp"
#include "shmht/error.hpp"

namespace shmht {
namespace {

std::uint64_t* link_word(Region& region, std::uint64_t offset) { return region.at<std::uint64_t>(offset); }

// Owner-only read-modify-write of an entry counter: no other process writes it.
template <class T>
void add_relaxed(std::atomic<T>& counter, T delta) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

}  // namespace

std::uint64_t Arena::allocate(std::uint64_t record_bytes) {
  const unsigned cls = layout::size_class_of(record_bytes);
  const std::uint64_t size = layout::class_bytes(cls);

  const std::uint64_t head = entry_->free_heads[cls].load(std::memory_order_relaxed);
  if (head != 0) {
    if (head % 8 != 0 || !region_->ensure_mapped(head, size)) {
      throw Error(ErrorCode::kCorrupt, region_->path() + ": corrupt table: free list of size class " +
                                           std::to_string(cls) + " points outside the arena (" +
                                           std::to_string(head) + ")");
    }
    const std::uint64_t next = std::atomic_ref<std::uint64_t>(*link_word(*region_, head)).load(std::memory_order_relaxed);
    entry_->free_heads[cls].store(next, std::memory_order_relaxed);
    add_relaxed<std::uint64_t>(entry_->free_bytes, -size);
    add_relaxed<std::int64_t>(entry_->live_bytes, static_cast<std::int64_t>(size));
    return head;
  }

  std::uint64_t cursor = entry_->chunk_cursor.load(std::memory_order_relaxed);
  std::uint64_t end = entry_->chunk_end.load(std::memory_order_relaxed);
  if (end < cursor || end - cursor < size || !region_->ensure_mapped(cursor, end - cursor)) {
    take_new_chunk(&cursor, &end);
  }
  entry_->chunk_cursor.store(cursor + size, std::memory_order_relaxed);
  add_relaxed<std::int64_t>(entry_->live_bytes, static_cast<std::int64_t>(size));
  return cursor;
}

void Arena::free(std::uint64_t offset, std::uint64_t record_bytes) noexcept {
  const unsigned cls = layout::size_class_of(record_bytes);
  const std::uint64_t size = layout::class_bytes(cls);
  // Link first, publish the head second: the list is consistent at every instant.
  std::atomic_ref<std::uint64_t>(*link_word(*region_, offset))
      .store(entry_->free_heads[cls].load(std::memory_order_relaxed), std::memory_order_relaxed);
  entry_->free_heads[cls].store(offset, std::memory_order_relaxed);
  add_relaxed<std::uint64_t>(entry_->free_bytes, size);
  add_relaxed<std::int64_t>(entry_->live_bytes, -static_cast<std::int64_t>(size));
}

void Arena::take_new_chunk(std::uint64_t* cursor, std::uint64_t* end) {
  layout::Header& header = region_->header();
  const std::uint64_t chunk = region_->fixed().chunk_bytes;
  std::uint64_t start = header.arena_end.load(std::memory_order_acquire);
  for (;;) {
    // Grow the file before publishing the chunk: arena_end never points past the file.
    if (header.file_bytes.load(std::memory_order_acquire) < start + chunk) region_->grow_file_to(start + chunk);
    if (header.arena_end.compare_exchange_weak(start, start + chunk, std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      break;
    }
  }
  if (!region_->ensure_mapped(start, chunk)) {
    throw Error(ErrorCode::kCorrupt, region_->path() + ": corrupt table: new chunk at " + std::to_string(start) +
                                         " is not inside the file");
  }
  // This attachment is about to fill the chunk: fault its pages in with one call rather
  // than one trap per 4 KiB page (a trap costs microseconds in a VM).
  region_->populate_for_write(start, chunk);
  *cursor = start;
  *end = start + chunk;
  // Cursor before end: a crash in between leaves end < cursor, which reads as "no room"
  // (the heir takes a fresh chunk) rather than a range that spans other chunks.
  entry_->chunk_cursor.store(*cursor, std::memory_order_relaxed);
  entry_->chunk_end.store(*end, std::memory_order_relaxed);
}

}  // namespace shmht
