// engines/optimistic_read.hpp - reads that take no lock and validate afterwards, shared
// by the seqlock and lock-free engines.
//
// A reader notes each bucket's control word as its probe enters the bucket, reads slot
// words and record bytes with relaxed atomic loads, then checks (after an acquire fence)
// that no noted control word changed. Every write that changes a slot changes its
// bucket's control word (seqlock: odd then even; lockfree: a version bumped by the same
// multi-word CAS), so an unchanged set means the reader saw one consistent state of
// those buckets. A record freed meanwhile is only reused after its slot changed, so a
// stale read is always caught by the check. Record lengths are bounds-checked before use.
//
// The engine supplies a Window:
//   bool enter(std::uint64_t slot);          // note the slot's bucket if new; false: busy
//   std::uint64_t load(std::uint64_t slot);  // the slot word (the engine may help first)
//   bool still_valid() const;                // no noted bucket changed
//   std::uint32_t busy_owner() const;        // who made enter() fail
//   bool moved(std::uint64_t bucket) const;  // the noted control word of an entered bucket has MOVED
// A lookup that finds its home bucket MOVED (growth.hpp) answers kMoved: the key's group
// lives in the next array, where the caller looks next.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "engines/engine.hpp"
#include "robin_hood.hpp"

namespace shmht::optimistic {

enum class Outcome { kValid, kTorn, kBusy, kMoved };
struct Attempt {
  Outcome outcome;
  ValueLength value = ValueLength::absent();  // kValid: the answer
  std::uint32_t busy_owner = 0;
};

// The control words a reader noted, one per bucket from the first it entered upwards. A
// lookup spans at most kMaxDist + 1 slots, so its window fits the inline array; a
// for_each batch spills into the vector.
class NotedVersions {
 public:
  void note(std::uint64_t bucket, std::uint64_t control) {
    if (count_ == 0) first_ = bucket;
    if (count_ < kInline) {
      inline_[count_] = control;
    } else {
      spilled_.push_back(control);
    }
    ++count_;
  }
  bool covers(std::uint64_t bucket) const noexcept { return count_ != 0 && bucket < first_ + count_; }
  // True if every noted bucket's control word still reads the same.
  bool unchanged(const layout::SlotArray& slots) const {
    std::atomic_thread_fence(std::memory_order_acquire);
    for (std::size_t i = 0; i < count_; ++i) {
      const std::uint64_t noted = i < kInline ? inline_[i] : spilled_[i - kInline];
      if (slots.bucket(first_ + i).control.load(std::memory_order_relaxed) != noted) return false;
    }
    return true;
  }
  std::uint64_t first() const noexcept { return first_; }
  std::uint64_t noted(std::uint64_t bucket) const { return bucket - first_ < kInline ? inline_[bucket - first_] : spilled_[bucket - first_ - kInline]; }

 private:
  static constexpr std::size_t kInline = (layout::kMaxDist + 1) / layout::kSlotsPerBucket + 2;
  std::uint64_t first_ = 0;
  std::size_t count_ = 0;
  std::array<std::uint64_t, kInline> inline_;
  std::vector<std::uint64_t> spilled_;
};

// One optimistic lookup. kValid: value is the answer (and the value was copied
// into out / out_string if it fit). Always inlined: returned through memory, the Attempt
// (written as several stores, read back in one wider load) failed store forwarding on
// every lookup, a sixth of a cached lookup's time (perf, issue 13).
template <class Window>
[[gnu::always_inline]] inline Attempt try_lookup(TableContext& ctx, const layout::SlotArray& slots, Window& window,
                                                  const HashedKey& key, std::span<char> out, std::string* out_string) {
  auto finish = [&](ValueLength value) {
    return window.still_valid() ? Attempt{Outcome::kValid, value} : Attempt{Outcome::kTorn};
  };
  const std::uint64_t home = slots.home_of(key.hash);
  const std::uint16_t tag = layout::SlotArray::tag_of_hash(key.hash);
  const std::uint64_t limit = slots.probe_limit();
  for (std::uint64_t i = home, d = 0; i < limit; ++i, ++d) {
    if (!window.enter(i)) return {Outcome::kBusy, ValueLength::absent(), window.busy_owner()};
    if (i == home && window.moved(layout::SlotArray::bucket_of_slot(home))) return {Outcome::kMoved};
    const std::uint64_t word = window.load(i);
    if (word == layout::kEmptySlot || layout::Slot::dist_of(word) < d) return finish(ValueLength::absent());
    // Only a word at distance d has this home (slot.hpp, invariant 1). During a migration
    // the old array still holds moved groups' words (growth.hpp), whose records may have
    // been freed and reused, even for this very key by a write not yet linked: a stale
    // word of another home must never be compared.
    if (layout::Slot::tag_of(word) != tag || layout::Slot::dist_of(word) != d) continue;
    ctx.prefetch_record(word, key.bytes.size());
    layout::RecordHeader header{};
    const std::byte* record = ctx.checked_record(word, &header);
    if (record == nullptr) {
      if (window.still_valid()) throw_invalid_record(ctx, word);  // not torn: really corrupt
      return {Outcome::kTorn};
    }
    if (header.key_bytes != key.bytes.size() || !record_bytes_equal(record, sizeof(layout::RecordHeader), key.bytes)) {
      continue;
    }
    const std::size_t value_offset = sizeof(layout::RecordHeader) + header.key_bytes;
    if (out_string != nullptr) {
      out_string->resize(header.value_bytes);
      load_record_bytes(record, value_offset, out_string->data(), header.value_bytes);
    } else if (header.value_bytes <= out.size()) {
      load_record_bytes(record, value_offset, out.data(), header.value_bytes);
    }
    return finish(ValueLength(header.value_bytes));
  }
  return finish(ValueLength::absent());
}

// Copies every entry whose home is in [begin, end) (robin_hood::visit_home_range); false
// if a writer got in the way (the caller drops what was appended and retries).
template <class Window>
bool try_copy_home_range(TableContext& ctx, const layout::SlotArray& slots, Window& window, std::uint64_t begin,
                         std::uint64_t end, std::vector<KeyValue>* out) {
  struct Torn {};
  try {
    robin_hood::visit_home_range(
        slots, begin, end,
        [&](std::uint64_t, std::uint64_t word) {
          layout::RecordHeader header{};
          const std::byte* record = ctx.checked_record(word, &header);
          if (record == nullptr) {
            // Torn, or (nothing moved) really corrupt: a retry would meet it again forever.
            if (window.still_valid()) throw_invalid_record(ctx, word);
            throw Torn{};
          }
          std::string key(header.key_bytes, '\0'), value(header.value_bytes, '\0');
          load_record_bytes(record, sizeof(layout::RecordHeader), key.data(), key.size());
          load_record_bytes(record, sizeof(layout::RecordHeader) + key.size(), value.data(), value.size());
          out->emplace_back(std::move(key), std::move(value));
        },
        [&](std::uint64_t s) {
          if (!window.enter(s)) throw Torn{};
        },
        [&](std::uint64_t s) { return window.load(s); });
  } catch (const Torn&) {
    return false;
  }
  return window.still_valid();
}

}  // namespace shmht::optimistic
