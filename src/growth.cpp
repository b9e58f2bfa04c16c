#include "growth.hpp"

#include <algorithm>
#include <string>

#include "fault_injection.hpp"
#include "shmht/error.hpp"

namespace shmht::growth {
namespace {

[[noreturn]] void corrupt(const Region& region, const std::string& why) {
  throw Error(ErrorCode::kCorrupt, region.path() + ": corrupt table: " + why + "; run `shmht check`");
}

// Where generation g's buckets start, as published (generation 0: create's array).
std::uint64_t published_offset(const Region& region, std::uint32_t g) noexcept {
  if (g == 0) return region.fixed().slot_array_offset;
  return region.header().array_offsets[g].load(std::memory_order_acquire);
}

// Claims a run of whole chunks at arena_end for generation g's array and returns where
// its buckets start. The claim is the first chunk's ChunkHeader (array_claim), taken by
// CAS as a chunk is; whoever loses that race at a chunk moves arena_end past what the
// winner claimed, so a claimant stopped after its claim delays nobody.
std::uint64_t claim_array_chunks(Region& region, std::uint32_t g) {
  const layout::ImmutableHeader& fixed = region.fixed();
  const std::uint64_t chunk = fixed.chunk_bytes;
  const std::uint64_t chunks = array_chunks(fixed, g);
  const std::uint64_t span = chunks * chunk;
  layout::Header& header = region.header();
  for (;;) {
    const std::uint64_t start = header.arena_end.load(std::memory_order_acquire);
    if (start < fixed.arena_offset || (start - fixed.arena_offset) % chunk != 0) {
      corrupt(region, "arena_end " + std::to_string(start) + " is not a chunk boundary");
    }
    if (start > fixed.max_bytes || span > fixed.max_bytes - start) {
      throw Error(ErrorCode::kTableFull,
                  region.path() + ": table full: growing the slot array to " + std::to_string(home_slots_of(fixed, g)) +
                      " home slots needs " + std::to_string(span) + " more bytes, past the table's max_bytes " +
                      std::to_string(fixed.max_bytes) + "; erase items, or create the table with a larger max_bytes");
    }
    region.grow_file_to(start + span);  // kNoSpace when the filesystem is full
    if (!region.ensure_file_mapped(start, span)) corrupt(region, "the file does not hold the chunks at arena_end");
    std::uint64_t found = 0;
    const bool won = region.at<layout::ChunkHeader>(start)->claim.compare_exchange_strong(
        found, layout::array_claim(g, static_cast<std::uint32_t>(chunks)), std::memory_order_acq_rel,
        std::memory_order_acquire);
    std::uint64_t advance = chunk;
    if (won) {
      advance = span;
    } else if (layout::is_array_claim(found) && layout::array_claim_chunks(found) != 0) {
      advance = std::uint64_t{layout::array_claim_chunks(found)} * chunk;  // another grower's array
    }
    std::uint64_t expected = start;
    header.arena_end.compare_exchange_strong(expected, start + advance, std::memory_order_acq_rel, std::memory_order_acquire);
    if (won) {
      // The chunks' tail past the buckets is never used: give its reserved pages back.
      const std::uint64_t buckets_end = start + layout::kArrayLeadBytes + array_bytes(home_slots_of(fixed, g));
      region.punch_hole(buckets_end, start + span - buckets_end);
      detail::fault_point(testing::FaultPoint::kGrowthArrayClaimed);
      return start + layout::kArrayLeadBytes;
    }
  }
}

// Punches out generation g's array, validated first (a peer's offset must not make us
// punch a hole into live records). Its first page, with the chunk's claim, stays.
void punch_array(Region& region, Arrays& arrays, std::uint32_t g) noexcept {
  try {
    const layout::SlotArray& array = arrays.array(g);
    const std::uint64_t offset = region.offset_of(array.buckets());
    // Generation 0 lies before the arena; the others fill whole chunks, all of which go.
    const std::uint64_t bytes = g == 0 ? array_bytes(array.home_slots())
                                       : array_chunks(region.fixed(), g) * region.fixed().chunk_bytes - layout::kArrayLeadBytes;
    region.punch_hole(offset, bytes);
  } catch (const Error&) {
    // Not a valid array: nothing of ours to give back; check reports what is wrong.
  }
}

}  // namespace

std::uint64_t array_chunks(const layout::ImmutableHeader& fixed, std::uint32_t g) noexcept {
  const std::uint64_t bytes = layout::kArrayLeadBytes + array_bytes(home_slots_of(fixed, g));
  return (bytes + fixed.chunk_bytes - 1) / fixed.chunk_bytes;
}

std::uint32_t generation_limit(const layout::ImmutableHeader& fixed) noexcept {
  std::uint32_t g = 0;
  while (g + 1 < layout::kMaxGenerations && home_slots_of(fixed, g + 1) <= kMaxHomeSlots &&
         array_bytes(home_slots_of(fixed, g + 1)) <= fixed.max_bytes) {
    ++g;
  }
  return g + 1;
}

Arrays::Arrays(Region& region) : region_(&region) { view(); }

const layout::SlotArray& Arrays::array(std::uint32_t g) {
  if (g >= arrays_.size()) corrupt(*region_, "slot array generation " + std::to_string(g) + " is past the last");
  layout::SlotArray& cached = arrays_[g];
  if (cached.valid()) return cached;
  const layout::ImmutableHeader& fixed = region_->fixed();
  const std::uint64_t home_slots = home_slots_of(fixed, g);
  if (g == 0) {
    cached = layout::SlotArray(region_->at<layout::Bucket>(fixed.slot_array_offset), home_slots);
    return cached;
  }
  // A peer may have written anything here: check it names a whole array of generation g
  // claimed as such, inside the arena, before anything reads a bucket of it.
  if (g >= generation_limit(fixed)) corrupt(*region_, "slot array generation " + std::to_string(g) + " is past this table's limit");
  const std::uint64_t offset = published_offset(*region_, g);
  const std::uint64_t chunk = fixed.chunk_bytes;
  const std::uint64_t chunks = array_chunks(fixed, g);
  const std::uint64_t start = offset - layout::kArrayLeadBytes;
  const bool placed = offset >= fixed.arena_offset + layout::kArrayLeadBytes && (start - fixed.arena_offset) % chunk == 0 &&
                      start + chunks * chunk <= region_->arena_end() && region_->ensure_mapped(start, chunks * chunk);
  if (!placed || region_->at<layout::ChunkHeader>(start)->claim.load(std::memory_order_acquire) !=
                     layout::array_claim(g, static_cast<std::uint32_t>(chunks))) {
    corrupt(*region_, "slot array generation " + std::to_string(g) + " is published at " + std::to_string(offset) +
                          ", which is not an array of that generation");
  }
  cached = layout::SlotArray(region_->at<layout::Bucket>(offset), home_slots);
  return cached;
}

void Arrays::refresh(std::uint64_t word) {
  const State state = decode(word);
  if (state.generation >= generation_limit(region_->fixed()) || (state.migrating && state.generation == 0)) {
    corrupt(*region_, "the growth word (" + std::to_string(word) + ") names no slot array this table can have");
  }
  ArrayView fresh;
  fresh.word = word;
  fresh.generation = state.generation;
  fresh.migrating = state.migrating;
  fresh.current = array(state.generation);
  if (state.migrating) fresh.old = array(state.generation - 1);
  view_ = fresh;
}

void start(Region& region, const ArrayView& seen, std::uint64_t initial_control) {
  if (seen.migrating) return;
  layout::Header& header = region.header();
  const std::uint32_t g = seen.generation + 1;
  if (g >= generation_limit(region.fixed())) {
    throw Error(ErrorCode::kTableFull, region.path() + ": table full: the slot array cannot grow past " +
                                           std::to_string(seen.current.home_slots()) +
                                           " home slots within this table's max_bytes " +
                                           std::to_string(region.fixed().max_bytes));
  }
  if (header.array_offsets[g].load(std::memory_order_acquire) == 0) {
    // A run of our own, never another grower's unpublished one: only its claimer ever
    // writes or publishes an array, so a claimer stopped anywhere below wakes to an array
    // nobody else has used. (Adopting a stopped grower's array let it wake inside this
    // loop and set a live array's versions back to 1 and clear its MOVED bits: the review
    // of issue 22, tests/review_direct_install_test.cpp.) A dead claimer's run is punched
    // by the finisher of the next migration (reclaim, below).
    const std::uint64_t offset = claim_array_chunks(region, g);
    const layout::SlotArray fresh(region.at<layout::Bucket>(offset), home_slots_of(region.fixed(), g));
    const auto give_up_ours = [&] {
      if (header.array_offsets[g].load(std::memory_order_acquire) != offset) {
        region.punch_hole(offset, array_bytes(home_slots_of(region.fixed(), g)));
      }
    };
    // Every control word as this engine starts them: the lock-free engine's version 1 (a
    // claimed run is zeros, which the lock engines start at). Checked once a page of
    // buckets: another grower published its array, or the growth moved on (ours is then
    // never used, and the finisher may have punched it already: writing on would only
    // fault its pages back in).
    for (std::uint64_t b = 0; initial_control != 0 && b < fresh.bucket_count(); ++b) {
      if (b % 64 == 0 && (header.array_offsets[g].load(std::memory_order_acquire) != 0 ||
                          header.growth.load(std::memory_order_acquire) != seen.word)) {
        give_up_ours();
        return;  // published by someone else (who flips the growth word), or the growth moved on
      }
      if (b % 64 == 0) detail::fault_point(testing::FaultPoint::kGrowthResettingControls);
      fresh.bucket(b).control.store(initial_control, std::memory_order_relaxed);
    }
    std::uint64_t published = 0;
    if (header.array_offsets[g].compare_exchange_strong(published, offset, std::memory_order_acq_rel, std::memory_order_acquire)) {
      detail::fault_point(testing::FaultPoint::kGrowthArrayPublished);
    } else {
      give_up_ours();  // another grower published a different array first: ours is never used
    }
  }
  // The cursor names the migration it counts for; a stale one starts this migration's.
  std::uint64_t cursor = header.migration_cursor.load(std::memory_order_acquire);
  while (cursor_generation(cursor) < g &&
         !header.migration_cursor.compare_exchange_weak(cursor, cursor_word(g, 0), std::memory_order_acq_rel,
                                                        std::memory_order_acquire)) {
  }
  std::uint64_t expected = seen.word;
  header.growth.compare_exchange_strong(expected, encode({g, true}), std::memory_order_acq_rel, std::memory_order_acquire);
}

GroupRange claim_groups(Region& region, const ArrayView& view, std::uint64_t count) {
  std::atomic<std::uint64_t>& cursor = region.header().migration_cursor;
  const std::uint64_t groups = view.old.group_count();
  const std::uint64_t seen = cursor.load(std::memory_order_acquire);
  if (cursor_generation(seen) != view.generation || cursor_next(seen) >= groups) return {0, 0};
  const std::uint64_t taken = cursor.fetch_add(count, std::memory_order_acq_rel);
  if (cursor_generation(taken) != view.generation || cursor_next(taken) >= groups) return {0, 0};
  return {cursor_next(taken), std::min(cursor_next(taken) + count, groups)};
}

bool mark_finished(Region& region, const ArrayView& view) {
  std::uint64_t expected = view.word;
  return region.header().growth.compare_exchange_strong(expected, encode({view.generation, false}), std::memory_order_acq_rel,
                                                        std::memory_order_acquire);
}

void reclaim(Region& region, Arrays& arrays, const ArrayView& finished) {
  layout::Header& header = region.header();
  // Every array below the current one is done with: punch those not punched yet (one a
  // finisher killed before punching included).
  // Punch first, then count it punched: a finisher killed in between leaves it to the
  // next (punching twice is harmless).
  std::uint64_t reclaimed = header.reclaimed_below.load(std::memory_order_acquire);
  while (reclaimed < finished.generation) {
    punch_array(region, arrays, static_cast<std::uint32_t>(reclaimed));
    header.reclaimed_below.compare_exchange_weak(reclaimed, reclaimed + 1, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  // Runs claimed for a generation up to the current one and never published (a grower
  // killed between its claim and its publication, or a loser of the race that died before
  // punching its own; a stopped one punches its own again when it wakes). A later generation's claim may be a
  // grower's at work right now: left alone.
  const layout::ImmutableHeader& fixed = region.fixed();
  const std::uint64_t chunk = fixed.chunk_bytes, end = region.arena_end();
  for (std::uint64_t start = fixed.arena_offset; start + chunk <= end;) {
    if (!region.ensure_mapped(start, sizeof(layout::ChunkHeader))) return;
    const std::uint64_t claim = region.at<layout::ChunkHeader>(start)->claim.load(std::memory_order_acquire);
    const std::uint64_t chunks = layout::is_array_claim(claim) ? layout::array_claim_chunks(claim) : 0;
    if (chunks == 0 || chunks > (end - start) / chunk) {
      start += chunk;
      continue;
    }
    // A claim names its generation and exactly that generation's run of chunks; a word
    // that says anything else is no claim of ours (a damaged chunk header): not punched.
    const std::uint32_t g = layout::array_claim_generation(claim);
    if (g >= 1 && g <= finished.generation && g < layout::kMaxGenerations && chunks == array_chunks(fixed, g) &&
        header.array_offsets[g].load(std::memory_order_acquire) != start + layout::kArrayLeadBytes) {
      region.punch_hole(start + layout::kPageBytes, chunks * chunk - layout::kPageBytes);
    }
    start += chunks * chunk;
  }
}

std::uint64_t moved_groups(const Region& region, const ArrayView& view) noexcept {
  if (!view.migrating) return 0;
  std::uint64_t moved = 0;
  for (std::uint64_t b = 0; b < view.old.group_count(); ++b) {
    // Once a page of buckets: a migration that ended meanwhile punched this array, and
    // reading on would only fault its pages back in.
    if (b % 64 == 0 && region.header().growth.load(std::memory_order_acquire) != view.word) return view.old.group_count();
    moved += layout::is_moved(view.old.bucket(b).control.load(std::memory_order_relaxed));
  }
  return moved;
}

}  // namespace shmht::growth
