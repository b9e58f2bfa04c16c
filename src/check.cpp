// check.cpp - the invariant checker behind `shmht check` (see shmht/check.hpp).
#include "shmht/check.hpp"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <vector>

#include "engines/engine.hpp"
#include "hash.hpp"
#include "loop_detector.hpp"
#include "shmht/table.hpp"
#include "table_access.hpp"

namespace shmht {
namespace {

using layout::Slot;

// A piece of the arena and what accounts for it. Every byte below arena_end is exactly
// one of these, or was leaked by a crashed writer (a gap between them).
struct Extent {
  enum Kind { kLiveRecord, kFreeRecord, kChunkHeader, kChunkTail, kUnrecordedChunk, kSlotArray };
  std::uint64_t begin, bytes;
  Kind kind;
};

const char* describe(Extent::Kind kind) {
  switch (kind) {
    case Extent::kLiveRecord: return "a live record";
    case Extent::kFreeRecord: return "a free record";
    case Extent::kChunkHeader: return "a chunk header";
    case Extent::kChunkTail: return "an attachment's unused chunk tail";
    case Extent::kUnrecordedChunk: return "a chunk an attachment is claiming";
    case Extent::kSlotArray: return "a slot array";
  }
  return "?";
}

class Checker {
 public:
  Checker(TableContext& ctx, bool reclaim) : ctx_(ctx), view_(ctx.view()), reclaim_(reclaim) {}

  void run(CheckReport* report) {
    report_ = report;
    // Writers allocate without the exclusive access we hold, so attachments may come and
    // go during the walk: count them before and after and keep the larger.
    const std::size_t attached_before = ctx_.region().attached_pids().size();
    check_slots();
    check_counters();
    check_free_lists();
    check_chunks();
    const std::vector<Extent> gaps = unaccounted_gaps();
    // Only a table with nothing else wrong: a damaged list or slot would make live or
    // free records look like gaps, and reclaiming those would hand them out twice.
    if (reclaim_ && report_->problems.empty()) {
      for (const Extent& gap : gaps) ctx_.arena().reclaim(gap.begin, gap.begin + gap.bytes);
      report_->reclaimed_bytes = report_->unaccounted_bytes;
      report_->free_record_bytes += report_->unaccounted_bytes;
      report_->unaccounted_bytes = 0;
    }
    const std::size_t attached = std::max(attached_before, ctx_.region().attached_pids().size());
    report_->other_attachments = attached > 0 ? static_cast<std::uint32_t>(attached - 1) : 0;  // less the checker
    report_->clean = report_->problems.empty();
  }

 private:
  template <class... Parts>
  void problem(const Parts&... parts) {
    constexpr std::size_t kMaxProblems = 50;
    if (report_->problems.size() < kMaxProblems) report_->problems.push_back((std::string() + ... + to_text(parts)));
  }
  static std::string to_text(const std::string& s) { return s; }
  static std::string to_text(const char* s) { return s; }
  static std::string to_text(std::uint64_t v) { return std::to_string(v); }

  void count_displacement(std::uint64_t slot, std::uint64_t dist) {
    std::vector<std::uint64_t>& histogram = report_->displacements;
    if (histogram.size() <= dist) histogram.resize(dist + 1);
    ++histogram[dist];
    if (layout::SlotArray::bucket_of_slot(slot) != layout::SlotArray::bucket_of_slot(slot - dist)) ++report_->past_home_bucket;
  }

  // Every live array: the current one, and during a migration the old one, where only
  // the groups not MOVED count (a moved group's words there are stale copies).
  void check_slots() {
    report_->generation = view_.generation;
    report_->migrating = view_.migrating;
    std::unordered_set<std::string> keys;
    check_array(view_.current, /*old=*/false, keys);
    if (view_.migrating) check_array(view_.old, /*old=*/true, keys);
  }

  bool group_moved(const layout::SlotArray& slots, std::uint64_t home) const {
    return layout::is_moved(slots.bucket(layout::SlotArray::bucket_of_slot(home)).control.load(std::memory_order_relaxed));
  }

  void check_array(const layout::SlotArray& slots, bool old, std::unordered_set<std::string>& keys) {
    const std::uint64_t seed = ctx_.fixed().hash_seed;
    const std::string where = old ? "old array slot " : (view_.migrating ? "new array slot " : "slot ");
    std::uint64_t previous = layout::kEmptySlot;
    for (std::uint64_t i = 0; i < slots.probe_limit(); previous = slots.load(i), ++i) {
      const std::uint64_t word = slots.load(i);
      if (word == layout::kEmptySlot) continue;
      if (Slot::dist_of(word) == layout::kDescriptorDist) {
        problem(where, i, ": holds a reference to a lock-free operation that nobody finished");
        continue;
      }
      const std::uint64_t dist = Slot::dist_of(word);
      if (dist > i || i - dist >= slots.home_slots()) {
        problem(where, i, ": distance ", dist, " puts its home outside the home slots");
        continue;
      }
      if (dist > 0 && (previous == layout::kEmptySlot || dist > Slot::dist_of(previous) + 1)) {
        problem(where, i, ": Robin Hood order broken (distance ", dist, " after ",
                previous == layout::kEmptySlot ? std::string("an empty slot") : "distance " + std::to_string(Slot::dist_of(previous)), ")");
      }
      if (old && group_moved(slots, i - dist)) continue;  // lives in the new array now
      if (view_.migrating && !old && !group_moved(view_.old, (i - dist) / 2)) {
        problem(where, i, ": a copy of old home group ", (i - dist) / 2 / layout::kSlotsPerBucket,
                ", which has not moved (a mover died part way; the next write to it removes the copy)");
        continue;
      }
      ++report_->items;
      count_displacement(i, dist);
      const std::uint64_t offset = Slot::offset_of(word);
      if (!live_offsets_.insert(offset).second) problem(where, i, ": record offset ", offset, " is used twice");
      layout::RecordHeader header{};
      const std::byte* record = ctx_.checked_record(word, &header);
      if (record == nullptr || offset + 8 > ctx_.region().arena_end(std::memory_order_relaxed)) {
        problem(where, i, ": record offset ", offset, " is outside the arena or its lengths exceed the limits");
        continue;
      }
      const std::uint64_t class_bytes = layout::class_bytes(layout::size_class_of(record_bytes_for(header.key_bytes, header.value_bytes)));
      report_->live_record_bytes += class_bytes;
      extents_.push_back({offset, class_bytes, Extent::kLiveRecord});
      const std::string_view key = record_key(record, header);
      const std::uint64_t hash = hash_key(key, seed);
      if (Slot::tag_of(word) != layout::SlotArray::tag_of_hash(hash)) problem(where, i, ": tag does not match the key's hash");
      if (slots.home_of(hash) != i - dist) problem(where, i, ": key's home is ", slots.home_of(hash), " but slot says ", i - dist);
      if (!keys.emplace(key).second) problem(where, i, ": duplicate key");
    }
  }

  void check_counters() {
    const std::int64_t counted = counted_items(ctx_.region());
    report_->counted_items = counted < 0 ? 0 : static_cast<std::uint64_t>(counted);
    if (counted != static_cast<std::int64_t>(report_->items)) {
      problem("item counters sum to ", static_cast<std::uint64_t>(counted), " but ", report_->items, " slots are occupied");
    }
  }

  // Counters are compared with the lists only where they must agree: an entry whose
  // holder is alive may be between changing a list and its counters (allocation takes
  // no lock), and a dead holder's counters may be off by the one record it died moving,
  // until its heir or cold start recounts them (arena.hpp). The shared stacks' counters
  // likewise only when no other process is attached.
  bool counters_settled(std::uint32_t e) const {
    if (e == ctx_.entry_index()) return true;
    return !ctx_.region().entry_is_live(e) && ctx_.region().entry(e).attached.load(std::memory_order_relaxed) == 0;
  }

  void check_free_lists() {
    std::unordered_set<std::uint64_t> free_offsets;
    bool others_attached = false;
    for (std::uint32_t e = 0; e < ctx_.fixed().max_processes; ++e) {
      const layout::ProcessEntry& entry = ctx_.region().entry(e);
      const bool settled = counters_settled(e);
      others_attached |= !settled;
      std::uint64_t entry_free_bytes = 0;
      for (unsigned cls = 0; cls < layout::kSizeClassCount; ++cls) {
        const std::string owner = "entry " + std::to_string(e);
        const std::uint64_t records = walk_free_list(owner, cls, entry.free_heads[cls].load(std::memory_order_relaxed), &free_offsets);
        if (settled) expect_count(owner, cls, entry.free_counts[cls].load(std::memory_order_relaxed), records);
        entry_free_bytes += records * layout::class_bytes(cls);
      }
      report_->free_record_bytes += entry_free_bytes;
      if (settled && entry_free_bytes != entry.free_bytes.load(std::memory_order_relaxed)) {
        problem("entry ", e, ": free_bytes says ", entry.free_bytes.load(std::memory_order_relaxed), " but its lists hold ", entry_free_bytes);
      }
    }
    const layout::Header& header = ctx_.region().header();
    for (unsigned cls = 0; cls < layout::kSizeClassCount; ++cls) {
      const std::uint64_t head = header.shared_free_heads[cls].load(std::memory_order_relaxed);
      const std::uint64_t records = walk_free_list("the shared lists", cls, layout::shared_head_offset(head), &free_offsets);
      if (!others_attached) expect_count("the shared lists", cls, header.shared_free_counts[cls].load(std::memory_order_relaxed), records);
      report_->free_record_bytes += records * layout::class_bytes(cls);
    }
  }

  void expect_count(const std::string& owner, unsigned cls, std::uint64_t counted, std::uint64_t listed) {
    if (counted != listed) problem(owner, ", size class ", cls, ": its counter says ", counted, " free records but its list holds ", listed);
  }

  // Follows one free list from `offset`; returns the number of records on it.
  std::uint64_t walk_free_list(const std::string& owner, unsigned cls, std::uint64_t offset,
                               std::unordered_set<std::uint64_t>* free_offsets) {
    const std::uint64_t arena_end = ctx_.region().arena_end(std::memory_order_relaxed);
    const std::uint64_t max_steps = (arena_end - ctx_.fixed().arena_offset) / layout::kLinearStep + 1;
    const std::uint64_t size = layout::class_bytes(cls);
    std::uint64_t records = 0;
    LoopDetector loop;  // a loop is reported after a few steps; max_steps is the backstop
    for (std::uint64_t steps = 0; offset != 0; ++steps) {
      // ensure_mapped, not just arena_end: the file may have grown since this handle
      // mapped it, and a link is followed only once it is known to be mapped.
      if (steps > max_steps || offset % 8 != 0 || offset < ctx_.fixed().arena_offset || offset + size > arena_end ||
          !ctx_.region().ensure_mapped(offset, size)) {
        problem(owner, ", size class ", cls, ": free list leaves the arena or loops (at ", offset, ")");
        break;
      }
      if (loop.revisits(offset)) {
        problem(owner, ", size class ", cls, ": free list loops (record ", offset, " comes round again)");
        break;
      }
      if (live_offsets_.count(offset) != 0) problem(owner, ": record at ", offset, " is both free and in use");
      if (!free_offsets->insert(offset).second) {
        // Seen before: this list loops back on itself, or runs into another list.
        if (comes_round(loop, offset, size, max_steps)) {
          problem(owner, ", size class ", cls, ": free list loops (a record comes round again)");
        } else {
          problem(owner, ": record at ", offset, " is on a free list twice");
        }
        break;
      }
      ++report_->free_records;
      ++records;
      extents_.push_back({offset, size, Extent::kFreeRecord});
      offset = std::atomic_ref<std::uint64_t>(*ctx_.region().at<std::uint64_t>(offset)).load(std::memory_order_relaxed);
    }
    return records;
  }

  // Follows the list on past `offset` (walked up to and including it with `loop`) until
  // the detector finds a loop (true) or the list ends, leaves the arena or passes the
  // bound.
  bool comes_round(LoopDetector& loop, std::uint64_t offset, std::uint64_t size, std::uint64_t max_steps) {
    const std::uint64_t arena_end = ctx_.region().arena_end(std::memory_order_relaxed);
    offset = std::atomic_ref<std::uint64_t>(*ctx_.region().at<std::uint64_t>(offset)).load(std::memory_order_relaxed);
    for (std::uint64_t steps = loop.steps(); offset != 0 && steps <= max_steps; ++steps) {
      if (offset % 8 != 0 || offset < ctx_.fixed().arena_offset || offset + size > arena_end ||
          !ctx_.region().ensure_mapped(offset, size)) {
        return false;
      }
      if (loop.revisits(offset)) return true;
      offset = std::atomic_ref<std::uint64_t>(*ctx_.region().at<std::uint64_t>(offset)).load(std::memory_order_relaxed);
    }
    return false;
  }

  void check_chunks() {
    const std::uint64_t arena_begin = ctx_.fixed().arena_offset;
    const std::uint64_t arena_end = ctx_.region().arena_end(std::memory_order_relaxed);
    const std::uint64_t chunk = ctx_.fixed().chunk_bytes;
    for (std::uint64_t start = arena_begin; start + chunk <= arena_end; start += chunk) {
      if (!ctx_.region().ensure_mapped(start, sizeof(layout::ChunkHeader))) {
        extents_.push_back({start, sizeof(layout::ChunkHeader), Extent::kChunkHeader});
        problem("chunk at ", start, " is below arena_end but outside the file");
        continue;
      }
      const std::uint64_t claim = ctx_.region().at<layout::ChunkHeader>(start)->claim.load(std::memory_order_relaxed);
      if (layout::is_array_claim(claim)) {
        // A slot array's run of chunks (growth.cpp): live, old (punched) or abandoned.
        const std::uint64_t span = std::uint64_t{layout::array_claim_chunks(claim)} * chunk;
        if (span == 0 || span > arena_end - start) {
          problem("chunk at ", start, " claims a slot array of ", span, " bytes, past arena_end");
          extents_.push_back({start, sizeof(layout::ChunkHeader), Extent::kChunkHeader});
          continue;
        }
        extents_.push_back({start, span, Extent::kSlotArray});
        report_->slot_array_bytes += span;
        start += span - chunk;
        continue;
      }
      extents_.push_back({start, sizeof(layout::ChunkHeader), Extent::kChunkHeader});
      if (claim == 0) problem("chunk at ", start, " is below arena_end but was never claimed");
    }
    if (view_.generation == 0) report_->slot_array_bytes += growth::array_bytes(view_.current.home_slots());
    for (std::uint32_t e = 0; e < ctx_.fixed().max_processes; ++e) {
      const layout::ProcessEntry& entry = ctx_.region().entry(e);
      const std::uint64_t cursor = entry.chunk_cursor.load(std::memory_order_relaxed);
      const std::uint64_t end = entry.chunk_end.load(std::memory_order_relaxed);
      if (end != 0) {
        if (end < arena_begin || end > arena_end || (cursor > end && cursor - end > ctx_.fixed().chunk_bytes)) {
          problem("entry ", e, ": current chunk [", cursor, ", ", end, ") is outside the arena");
        } else if (cursor < end) {
          extents_.push_back({cursor, end - cursor, Extent::kChunkTail});
        }
      }
      // Claimed but not yet recorded as the entry's chunk: its claimant is about to use it,
      // or died first and its heir will (Arena::inherit_interrupted_claim). Not leaked.
      const std::uint64_t claiming = entry.claiming_chunk.load(std::memory_order_relaxed);
      if (claiming >= arena_begin && claiming + chunk <= arena_end && (claiming - arena_begin) % chunk == 0 &&
          end != claiming + chunk &&
          ctx_.region().at<layout::ChunkHeader>(claiming)->claim.load(std::memory_order_relaxed) ==
              layout::chunk_claim(e, entry.generation.load(std::memory_order_relaxed))) {
        extents_.push_back({claiming + sizeof(layout::ChunkHeader), chunk - sizeof(layout::ChunkHeader), Extent::kUnrecordedChunk});
      }
    }
  }

  // The arena bytes no extent covers (leaked records), reported as unaccounted; extents
  // that overlap are reported as problems.
  std::vector<Extent> unaccounted_gaps() {
    std::sort(extents_.begin(), extents_.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
    std::vector<Extent> gaps;
    std::uint64_t covered_to = ctx_.fixed().arena_offset;
    const Extent* previous = nullptr;
    for (const Extent& x : extents_) {
      if (previous == nullptr && x.begin < covered_to) {
        problem("arena bytes at ", x.begin, " are ", describe(x.kind), " but lie before the arena");
      } else if (x.begin < covered_to) {
        problem("arena bytes at ", x.begin, " are ", describe(x.kind), " and also ", describe(previous->kind), " at ", previous->begin);
      } else if (x.begin > covered_to) {
        gaps.push_back({covered_to, x.begin - covered_to, Extent::kLiveRecord});
      }
      if (x.begin + x.bytes > covered_to) {
        covered_to = x.begin + x.bytes;
        previous = &x;
      }
    }
    const std::uint64_t arena_end = ctx_.region().arena_end(std::memory_order_relaxed);
    if (arena_end > covered_to) gaps.push_back({covered_to, arena_end - covered_to, Extent::kLiveRecord});
    for (const Extent& gap : gaps) report_->unaccounted_bytes += gap.bytes;
    return gaps;
  }

  TableContext& ctx_;
  const growth::ArrayView view_;
  const bool reclaim_;
  CheckReport* report_ = nullptr;
  std::unordered_set<std::uint64_t> live_offsets_;
  std::vector<Extent> extents_;
};

}  // namespace

CheckReport check_table(const std::string& name, const CheckOptions& options) {
  CheckReport report;
  OpenOptions open;  // adopts the active engine
  open.trust_foreign_owner = options.trust_foreign_owner;
  Table table = Table::open(name, open);
  auto check = [&](bool reclaim) {
    TableAccess::run_exclusive(table, [&](TableContext& ctx) { Checker(ctx, reclaim).run(&report); }, &report.repaired_shifts);
  };
  if (!options.reclaim_leaked) {
    check(false);
    return report;
  }
  std::vector<pid_t> others;
  TableAccess::with_admin_lock(table, [&](TableContext& ctx, const std::vector<std::uint32_t>& live) {
    for (const std::uint32_t e : live) {
      if (e != ctx.entry_index()) others.push_back(static_cast<pid_t>(ctx.region().entry(e).pid.load(std::memory_order_relaxed)));
    }
    // Alone, and nobody can attach until we are done: every unlinked record is leaked.
    if (others.empty()) check(true);
  });
  if (!others.empty()) {
    // Pids, each once: one process may hold several attachments (or be this one).
    std::sort(others.begin(), others.end());
    others.erase(std::unique(others.begin(), others.end()), others.end());
    report.not_reclaimed_because = "other attachments are live (pid";
    for (std::size_t i = 0; i < others.size(); ++i) report.not_reclaimed_because += (i ? ", " : " ") + std::to_string(others[i]);
    report.not_reclaimed_because += "), whose records in flight look like leaked ones; run it again when they have detached";
    check(false);  // with the admin lock released: openers wait for it
  }
  return report;
}

}  // namespace shmht
