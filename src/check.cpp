// check.cpp - the invariant checker behind `shmht check` (see shmht/check.hpp).
#include "shmht/check.hpp"

#include <algorithm>
#include <string>
#include <unordered_set>

#include "engines/engine.hpp"
#include "hash.hpp"
#include "shmht/table.hpp"
#include "table_access.hpp"

namespace shmht {
namespace {

using layout::Slot;

class Checker {
 public:
  explicit Checker(TableContext& ctx) : ctx_(ctx), slots_(ctx.slots()) {}

  void run(CheckReport* report) {
    report_ = report;
    // Writers allocate without the exclusive access we hold, so attachments may come and
    // go during the walk: count them before and after and keep the larger.
    const std::size_t attached_before = ctx_.region().attached_pids().size();
    check_slots();
    check_counters();
    check_free_lists();
    check_chunks();
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

  void check_slots() {
    const std::uint64_t seed = ctx_.fixed().hash_seed;
    std::unordered_set<std::string> keys;
    std::uint64_t previous = layout::kEmptySlot;
    for (std::uint64_t i = 0; i < slots_.probe_limit(); previous = slots_.load(i), ++i) {
      const std::uint64_t word = slots_.load(i);
      if (word == layout::kEmptySlot) continue;
      if (Slot::dist_of(word) == layout::kDescriptorDist) {
        problem("slot ", i, ": holds a reference to a lock-free operation that nobody finished");
        continue;
      }
      ++report_->items;
      const std::uint64_t dist = Slot::dist_of(word);
      if (dist > i || i - dist >= slots_.home_slots()) {
        problem("slot ", i, ": distance ", dist, " puts its home outside the home slots");
        continue;
      }
      if (dist > 0 && (previous == layout::kEmptySlot || dist > Slot::dist_of(previous) + 1)) {
        problem("slot ", i, ": Robin Hood order broken (distance ", dist, " after ",
                previous == layout::kEmptySlot ? std::string("an empty slot") : "distance " + std::to_string(Slot::dist_of(previous)), ")");
      }
      const std::uint64_t offset = Slot::offset_of(word);
      if (!live_offsets_.insert(offset).second) problem("slot ", i, ": record offset ", offset, " is used twice");
      layout::RecordHeader header{};
      const std::byte* record = ctx_.checked_record(word, &header);
      if (record == nullptr || offset + 8 > ctx_.region().header().arena_end.load(std::memory_order_relaxed)) {
        problem("slot ", i, ": record offset ", offset, " is outside the arena or its lengths exceed the limits");
        continue;
      }
      report_->live_record_bytes += layout::class_bytes(layout::size_class_of(record_bytes_for(header.key_bytes, header.value_bytes)));
      const std::string_view key = record_key(record, header);
      const std::uint64_t hash = hash_key(key, seed);
      if (Slot::tag_of(word) != layout::SlotArray::tag_of_hash(hash)) problem("slot ", i, ": tag does not match the key's hash");
      if (slots_.home_of(hash) != i - dist) problem("slot ", i, ": key's home is ", slots_.home_of(hash), " but slot says ", i - dist);
      if (!keys.emplace(key).second) problem("slot ", i, ": duplicate key");
    }
  }

  void check_counters() {
    const std::int64_t counted = counted_items(ctx_.region());
    report_->counted_items = counted < 0 ? 0 : static_cast<std::uint64_t>(counted);
    if (counted != static_cast<std::int64_t>(report_->items)) {
      problem("item counters sum to ", static_cast<std::uint64_t>(counted), " but ", report_->items, " slots are occupied");
    }
  }

  void check_free_lists() {
    std::unordered_set<std::uint64_t> free_offsets;
    for (std::uint32_t e = 0; e < ctx_.fixed().max_processes; ++e) {
      const layout::ProcessEntry& entry = ctx_.region().entry(e);
      std::uint64_t entry_free_bytes = 0;
      for (unsigned cls = 0; cls < layout::kSizeClassCount; ++cls) {
        entry_free_bytes += walk_free_list("entry " + std::to_string(e), cls,
                                           entry.free_heads[cls].load(std::memory_order_relaxed), &free_offsets);
      }
      report_->free_record_bytes += entry_free_bytes;
      if (entry_free_bytes != entry.free_bytes.load(std::memory_order_relaxed)) {
        problem("entry ", e, ": free_bytes says ", entry.free_bytes.load(std::memory_order_relaxed), " but its lists hold ", entry_free_bytes);
      }
    }
    const layout::Header& header = ctx_.region().header();
    std::uint64_t shared_bytes = 0;
    for (unsigned cls = 0; cls < layout::kSizeClassCount; ++cls) {
      const std::uint64_t head = header.shared_free_heads[cls].load(std::memory_order_relaxed);
      shared_bytes += walk_free_list("the shared lists", cls, layout::shared_head_offset(head), &free_offsets);
    }
    report_->free_record_bytes += shared_bytes;
    if (shared_bytes != header.shared_free_bytes.load(std::memory_order_relaxed)) {
      problem("shared_free_bytes says ", header.shared_free_bytes.load(std::memory_order_relaxed),
              " but the shared lists hold ", shared_bytes);
    }
  }

  // Follows one free list from `offset`; returns the bytes it holds.
  std::uint64_t walk_free_list(const std::string& owner, unsigned cls, std::uint64_t offset,
                               std::unordered_set<std::uint64_t>* free_offsets) {
    const std::uint64_t arena_end = ctx_.region().header().arena_end.load(std::memory_order_relaxed);
    const std::uint64_t max_steps = (arena_end - ctx_.fixed().arena_offset) / layout::kLinearStep + 1;
    const std::uint64_t size = layout::class_bytes(cls);
    std::uint64_t bytes = 0;
    for (std::uint64_t steps = 0; offset != 0; ++steps) {
      // ensure_mapped, not just arena_end: the file may have grown since this handle
      // mapped it, and a link is followed only once it is known to be mapped.
      if (steps > max_steps || offset % 8 != 0 || offset < ctx_.fixed().arena_offset || offset + size > arena_end ||
          !ctx_.region().ensure_mapped(offset, size)) {
        problem(owner, ", size class ", cls, ": free list leaves the arena or loops (at ", offset, ")");
        break;
      }
      if (live_offsets_.count(offset) != 0) problem(owner, ": record at ", offset, " is both free and in use");
      if (!free_offsets->insert(offset).second) {
        problem(owner, ": record at ", offset, " is on a free list twice");
        break;
      }
      ++report_->free_records;
      bytes += size;
      offset = std::atomic_ref<std::uint64_t>(*ctx_.region().at<std::uint64_t>(offset)).load(std::memory_order_relaxed);
    }
    return bytes;
  }

  void check_chunks() {
    const std::uint64_t arena_begin = ctx_.fixed().arena_offset;
    const std::uint64_t arena_end = ctx_.region().header().arena_end.load(std::memory_order_relaxed);
    const std::uint64_t chunk = ctx_.fixed().chunk_bytes;
    std::uint64_t chunk_headers = 0;
    for (std::uint64_t start = arena_begin; start + chunk <= arena_end; start += chunk) {
      chunk_headers += sizeof(layout::ChunkHeader);
      if (!ctx_.region().ensure_mapped(start, sizeof(layout::ChunkHeader))) {
        problem("chunk at ", start, " is below arena_end but outside the file");
      } else if (ctx_.region().at<layout::ChunkHeader>(start)->claim.load(std::memory_order_relaxed) == 0) {
        problem("chunk at ", start, " is below arena_end but was never claimed");
      }
    }
    std::uint64_t unused_tails = 0;
    for (std::uint32_t e = 0; e < ctx_.fixed().max_processes; ++e) {
      const layout::ProcessEntry& entry = ctx_.region().entry(e);
      const std::uint64_t cursor = entry.chunk_cursor.load(std::memory_order_relaxed);
      const std::uint64_t end = entry.chunk_end.load(std::memory_order_relaxed);
      if (end == 0) continue;
      if (end < arena_begin || end > arena_end || (cursor > end && cursor - end > ctx_.fixed().chunk_bytes)) {
        problem("entry ", e, ": current chunk [", cursor, ", ", end, ") is outside the arena");
      } else if (cursor <= end) {
        unused_tails += end - cursor;
      }
    }
    const std::uint64_t accounted = report_->live_record_bytes + report_->free_record_bytes + unused_tails + chunk_headers;
    const std::uint64_t handed_out = arena_end - arena_begin;
    report_->unaccounted_bytes = handed_out > accounted ? handed_out - accounted : 0;
  }

  TableContext& ctx_;
  layout::SlotArray slots_;
  CheckReport* report_ = nullptr;
  std::unordered_set<std::uint64_t> live_offsets_;
};

}  // namespace

CheckReport check_table(const std::string& name) {
  CheckReport report;
  Table table = Table::open(name);  // adopts the active engine
  TableAccess::run_exclusive(table, [&](TableContext& ctx) { Checker(ctx).run(&report); }, &report.repaired_shifts);
  return report;
}

}  // namespace shmht
