// engines/engine.hpp - what every engine implements, and the per-handle context it uses.
//
// Layering (as in Boost.Unordered's foa/): layout/ and robin_hood.hpp are the mechanism
// (where bytes are, how probing works); an engine adds a concurrency protocol on top;
// shmht::Table (table.cpp) is the thin public wrapper that checks arguments, hashes the
// key and forwards to the engine chosen at open.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "arena.hpp"
#include "growth.hpp"
#include "layout/slot.hpp"
#include "prefetch.hpp"
#include "record_io.hpp"
#include "region.hpp"
#include "shmht/engine.hpp"
#include "shmht/error.hpp"
#include "shmht/table.hpp"

namespace shmht {

// A key with its hash computed once.
struct HashedKey {
  std::string_view bytes;
  std::uint64_t hash;
};

// A record allocated and written for a write, not linked yet.
struct NewRecord {
  std::uint64_t offset, bytes;
};

// Everything one open handle knows about its table; owned by the Table, used by its engine.
class TableContext {
 public:
  TableContext(Region region, std::uint32_t entry_index)
      : region_(std::move(region)),
        arrays_(region_),
        entry_index_(entry_index),
        arena_(region_, entry_index) {}
  TableContext(const TableContext&) = delete;
  TableContext& operator=(const TableContext&) = delete;

  Region& region() noexcept { return region_; }
  const Region& region() const noexcept { return region_; }
  // The slot arrays as the growth word says now (growth.hpp): what every operation starts from.
  const growth::ArrayView& view() { return arrays_.view(); }
  growth::Arrays& arrays() noexcept { return arrays_; }
  // The current array of the last view() (for prefetching and sizing; an operation that
  // reads or writes slots takes its arrays from view()).
  const layout::SlotArray& slots() const noexcept { return arrays_.last().current; }
  Arena& arena() noexcept { return arena_; }
  std::uint32_t entry_index() const noexcept { return entry_index_; }
  layout::ProcessEntry& own_entry() noexcept { return region_.entry(entry_index_); }
  const layout::ImmutableHeader& fixed() const noexcept { return region_.fixed(); }
  // A read-only handle (OpenOptions::read_only): mapped PROT_READ, attached to no entry.
  // Its engine must never store to shared memory, recovery included.
  bool read_only() const noexcept { return region_.read_only(); }

  // The record a slot word points at, with its header, after checking that the offset,
  // both lengths and the whole record lie inside the arena and the table's limits.
  // nullptr if they do not: the caller reports corruption (lock holders) or retries
  // (optimistic readers, whose torn read this may be).
  const std::byte* checked_record(std::uint64_t slot_word, layout::RecordHeader* header) {
    const std::uint64_t offset = layout::Slot::offset_of(slot_word);
    if (!region_.ensure_mapped(offset, sizeof(layout::RecordHeader))) return nullptr;
    const std::byte* record = region_.at(offset);
    *header = load_record_header(record);
    if (header->key_bytes > fixed().max_key_bytes || header->value_bytes > fixed().max_value_bytes) return nullptr;
    if (!region_.ensure_mapped(offset, record_bytes_for(header->key_bytes, header->value_bytes))) return nullptr;
    return record;
  }

  // Requests the lines a lookup of a `key_bytes`-byte key reads first from the record a
  // slot word names: its header, the key and the start of the value (up to
  // kPrefetchValueBytes of it, no more than the table's max_value_bytes), before
  // checked_record() waits for the first line. Reading the header, comparing the key and
  // copying a short value then wait for one miss, not one per line; a longer value's
  // later lines (and a long key's past kPrefetchMaxBytes) are left to the hardware's
  // sequential prefetcher. Decides nothing: an offset outside the mapping is not prefetched.
  static constexpr std::uint64_t kPrefetchValueBytes = 64, kPrefetchMaxBytes = 256;
  void prefetch_record(std::uint64_t slot_word, std::size_t key_bytes) const noexcept {
    const std::uint64_t offset = layout::Slot::offset_of(slot_word);
    const std::uint64_t bytes = std::min(
        record_bytes_for(key_bytes, std::min<std::uint64_t>(fixed().max_value_bytes, kPrefetchValueBytes)), kPrefetchMaxBytes);
    if (!region_.contains(offset, bytes)) return;
    const std::byte* record = region_.at(offset);
    for (std::uint64_t at = 0; at < bytes; at += 64) prefetch_for_read(record + at);
    prefetch_for_read(record + bytes - 1);  // a record is 8-aligned: it may end on one more line
  }

  // Where a lookup's probe is expected to end: a Robin Hood probe starts at the key's
  // home slot and runs on past its bucket's end when the key was displaced that far. At
  // the table's 0.85 maximum load (1M keys, `shmht check` reports it) displacements were
  // 0 to 3 slots for 70 % of keys and 7 or more for 11 %; 36 % of all keys lay past their
  // home bucket, and their lookups met the next bucket's line cold, then their record,
  // one miss after the other. The next bucket is expected too when fewer than
  // kExpectedProbeSlots of the home bucket's slots lie at or after home: a home in one
  // of its bucket's last four slots (four times in seven) costs a second line, and the
  // lines requested then hold nine in ten keys' slots.
  static constexpr std::uint64_t kExpectedProbeSlots = 5;
  std::uint64_t expected_probe_end(std::uint64_t home) const noexcept {
    const std::uint64_t home_bucket_end = (layout::SlotArray::bucket_of_slot(home) + 1) * layout::kSlotsPerBucket;
    const bool runs_on = home_bucket_end - home < kExpectedProbeSlots;
    return std::min(runs_on ? home_bucket_end + layout::kSlotsPerBucket : home_bucket_end, slots().probe_limit());
  }

  // Requests the bucket lines a lookup of `hash` is expected to read (its home bucket,
  // and the next one when expected_probe_end says so), for a batch whose lookups come
  // later (batch_prefetch.hpp): a probe that runs on into the next bucket then finds both
  // lines there. A single lookup does not ask for the next bucket ahead: tried, and
  // measured side by side (batch_bench get_into, contains), single lookups ran slower
  // with it; a single lookup reads its home bucket at once anyway.
  void prefetch_probed_buckets(std::uint64_t hash) const noexcept {
    const std::uint64_t home = slots().home_of(hash);
    const std::uint64_t first = layout::SlotArray::bucket_of_slot(home);
    const std::uint64_t last = layout::SlotArray::bucket_of_slot(expected_probe_end(home) - 1);
    prefetch_for_read(&slots().bucket(first));
    if (last != first) prefetch_for_read(&slots().bucket(last));
  }

  // Requests a key's home bucket line for writing before a write writes its record
  // (ProtocolEngine and the lock-free engine's write_record): the bucket's miss, which
  // the write's first lock or CAS would otherwise wait for, overlaps the record's stores.
  void prefetch_home_bucket_for_write(std::uint64_t hash) const noexcept {
    prefetch_for_write(&slots().home_bucket(hash));
  }

  // Allocates a record for a write and stores the key and value in it; every engine's
  // writes go through here. The record may be one freed after the write that unlinked it
  // bumped a version (a seqlock sequence, a lock-free bucket version). An optimistic
  // reader still reading it as the old record must fail its re-check if it sees any of
  // these bytes: this release fence, before the relaxed byte stores, pairs with the
  // reader's acquire fence before it reloads the version (the bump happens-before the
  // free, which happens-before this allocation). Portable; free on x86-64, where TSO
  // alone keeps the order.
  NewRecord write_new_record(const HashedKey& key, std::string_view value) {
    prefetch_home_bucket_for_write(key.hash);
    const std::uint64_t bytes = record_bytes_for(key.bytes.size(), value.size());
    const std::uint64_t offset = arena_.allocate(bytes);
    std::atomic_thread_fence(std::memory_order_release);
    store_record(region_.at(offset), key.bytes, value);
    return {offset, bytes};
  }

  // Owner-only counter update (see layout::ProcessEntry).
  void add_items(std::int64_t delta) noexcept {
    auto& counter = own_entry().item_delta;
    counter.store(layout::wrapping_add(counter.load(std::memory_order_relaxed), delta), std::memory_order_relaxed);
  }

 private:
  Region region_;
  growth::Arrays arrays_;
  std::uint32_t entry_index_;
  Arena arena_;
};

// A slot points at a record that fails checked_record() while nothing is moving it.
[[noreturn]] inline void throw_invalid_record(TableContext& ctx, std::uint64_t word) {
  throw Error(ErrorCode::kCorrupt, ctx.region().path() + ": corrupt table: a slot points at an invalid record (offset " +
                                       std::to_string(layout::Slot::offset_of(word)) + "); run `shmht check`");
}

// A read-only handle met something only a writer can do (recover a dead writer's lock).
[[noreturn]] inline void throw_needs_write_access(TableContext& ctx, const std::string& what) {
  throw Error(ErrorCode::kPermissionDenied, ctx.region().path() + ": opened read-only, but " + what +
                                                " needs write access; open the table read-write once");
}

// An insert found no free slot within kMaxDist of the key's home (every engine).
[[noreturn]] inline void throw_no_free_slot(TableContext& ctx) {
  throw Error(ErrorCode::kTableFull, ctx.region().path() + ": table full: no free slot within probe distance " +
                                         std::to_string(layout::kMaxDist) + " of the key's home (capacity " +
                                         std::to_string(ctx.fixed().capacity) + "; create the table with a larger capacity)");
}

using KeyValue = std::pair<std::string, std::string>;

// The item count the attachments' counters add up to (every engine's counters). A
// lock-free counter may hold an operation's reference while it runs: a caller that can
// meet one passes a reader that finishes it (the default reads the raw word, for callers
// that have settled every operation first: check, recovery).
using CounterReader = std::function<std::uint64_t(const std::atomic<std::uint64_t>&)>;
std::int64_t counted_items(const Region& region, const CounterReader& read = [](const std::atomic<std::uint64_t>& w) {
  return w.load(std::memory_order_relaxed);
});

// A lookup's answer in one word: the value's length, or absent. Engines' inner lookups
// return this rather than std::optional<std::size_t>: GCC 12 builds an optional in memory,
// its flag with a byte store, then reads it back with a word load, which fails store
// forwarding on every lookup (14 % of the seqlock lookup's samples in the in-cache batched
// benchmark, experiments/results/profiles/batched-hot-seqlock-optional-return-*.txt).
class ValueLength {
 public:
  static constexpr ValueLength absent() noexcept { return ValueLength(kAbsent); }
  static constexpr ValueLength of(std::optional<std::size_t> length) noexcept { return ValueLength(length.value_or(kAbsent)); }
  constexpr explicit ValueLength(std::size_t bytes) noexcept : bytes_(bytes) {}
  constexpr bool found() const noexcept { return bytes_ != kAbsent; }
  constexpr std::size_t bytes() const noexcept { return bytes_; }  // only if found()
  constexpr std::optional<std::size_t> optional() const noexcept {
    return found() ? std::optional<std::size_t>(bytes_) : std::nullopt;
  }

 private:
  static constexpr std::size_t kAbsent = ~std::size_t{0};
  std::size_t bytes_;
};

// The answers of one Engine::lookup_batch call, reused batch after batch: once its
// buffer has grown, a batch lookup allocates nothing. A lookup copies a found value
// straight into the free end of one buffer (room()), where the answer keeps it: no
// std::string per value, no second copy.
class BatchAnswers {
 public:
  // Forgets the last batch's answers; every key of the next batch starts absent.
  void reset(std::size_t keys) {
    used_ = 0;
    begin_.assign(keys, kAbsent);
    length_.assign(keys, 0);
  }

  // Answers key i with lookup(room) -> ValueLength, a get(key, span) that copies the
  // value into room only if it fits and returns its length either way. A value longer
  // than the room is looked up again into room enough for it (each answer is one single
  // lookup's, so the value may have changed meanwhile: the retry's is kept). Without
  // values, lookup gets an empty room and only presence is kept. Key i's earlier answer,
  // if any, is replaced: an engine that repairs a dead writer's lock mid-batch answers
  // the batch again from its first key (ProtocolEngine::lookup_batch).
  template <class Lookup>
  void answer(std::size_t i, bool want_values, Lookup&& lookup) {
    ValueLength length = lookup(want_values ? room(0) : std::span<char>());
    while (want_values && length.found() && length.bytes() > free_bytes()) length = lookup(room(length.bytes()));
    begin_[i] = length.found() ? used_ : kAbsent;
    length_[i] = length.found() && want_values ? length.bytes() : 0;  // present without values: empty
    used_ += length_[i];
  }

  // Answers every key of a batch: key i with lookup(keys[i], room), as answer() does.
  template <class Lookup>
  void answer_each(std::span<const HashedKey> keys, bool want_values, Lookup&& lookup) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      answer(i, want_values, [&](std::span<char> room) { return lookup(keys[i], room); });
    }
  }

  bool found(std::size_t i) const noexcept { return begin_[i] != kAbsent; }
  // Key i's value, if found (empty for a present key of a lookup without values).
  std::string_view value(std::size_t i) const noexcept { return {bytes_.data() + begin_[i], length_[i]}; }

 private:
  static constexpr std::size_t kAbsent = ~std::size_t{0};
  // Most tables' values fit without a retry; a larger one grows the buffer to fit it.
  static constexpr std::size_t kMinRoom = 4096;

  std::size_t free_bytes() const noexcept { return bytes_.size() - used_; }
  std::span<char> room(std::size_t at_least) {
    const std::size_t wanted = std::max(at_least, kMinRoom);
    if (free_bytes() < wanted) bytes_.resize(std::max(2 * bytes_.size(), used_ + wanted));
    return {bytes_.data() + used_, free_bytes()};
  }

  std::vector<char> bytes_;
  std::size_t used_ = 0;
  std::vector<std::size_t> begin_, length_;
};

class EngineBase {
 public:
  virtual ~EngineBase() = default;

  // Value length if present; the value is copied into `out` only if it fits.
  virtual std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) = 0;
  virtual bool get(const HashedKey& key, std::string* out) = 0;
  virtual bool contains(const HashedKey& key) = 0;
  // Looks up every key into `out` (reset for keys.size() by the caller): key i's value
  // (empty for a present key when !want_values), or absent. Each answer is one single
  // lookup's; the batch is not one atomic step. Table::get_many prefetches the keys'
  // lines first (batch_prefetch.hpp); this default then looks them up one by one, and an
  // engine whose readers lock overrides it to lock once per batch.
  virtual void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out);
  // Insert if absent; false (and nothing changed) if present.
  virtual bool insert(const HashedKey& key, std::string_view value) = 0;
  // Insert or overwrite; true if the key was new.
  virtual bool assign(const HashedKey& key, std::string_view value) = 0;
  virtual bool erase(const HashedKey& key) = 0;
  // One atomic step (Table::compare_and_set): if the key's value equals `expected`
  // (nullopt: the key is absent), makes it `desired` (nullopt: erases it) and returns
  // true. Otherwise changes nothing, returns false and, if `current` is set, stores in
  // it the value that was compared (nullopt: absent).
  virtual bool compare_and_set(const HashedKey& key, std::optional<std::string_view> expected,
                               std::optional<std::string_view> desired, std::optional<std::string>* current) = 0;
  // Erase, also returning the erased value in *old (if set) from the same atomic step.
  virtual bool take(const HashedKey& key, std::string* old) = 0;
  // Appends a copy of every entry whose home slot is in [begin, end) of slot array
  // `generation` (see robin_hood::visit_home_range): for_each walks the table in such
  // ranges. begin is a multiple of 14 (two buckets: one home group of the array before),
  // end too unless it is the array's last home slot. If the table has grown since, the
  // range is the same hashes in the current array ([begin << d, end << d) for d growths):
  // returns the generation the range was copied at, so the caller scales its cursor.
  virtual std::uint32_t copy_home_range(std::uint32_t generation, std::uint64_t begin, std::uint64_t end,
                                        std::vector<KeyValue>* out) = 0;
  // Runs fn with every writer excluded, after repairing anything a dead writer left.
  // Returns the number of interrupted shifts repaired on the way in.
  virtual std::uint64_t with_exclusive_access(const std::function<void()>& fn) = 0;
  // This handle's coordination costs (shmht::OperationCounters); zero for lock engines.
  virtual OperationCounters counters() const { return {}; }
  // What the item counters add up to (counted_items), read the way this engine must.
  virtual std::int64_t item_count(Region& region) { return counted_items(region); }
};

// Each engine file defines its factory and the initialiser of its engine-area state;
// make_engine and switch_engine_state dispatch (engines.cpp).
std::unique_ptr<EngineBase> make_global_lock_engine(TableContext& context);
std::unique_ptr<EngineBase> make_striped_engine(TableContext& context);
std::unique_ptr<EngineBase> make_seqlock_engine(TableContext& context);
std::unique_ptr<EngineBase> make_lockfree_engine(TableContext& context);
void init_global_lock_state(Region& region);
void init_striped_state(Region& region, std::uint32_t stripes);
std::unique_ptr<EngineBase> make_engine(Engine engine, TableContext& context);
// A read-only handle's engine: reads go to `reader` (an engine whose readers never write),
// around the cold starts that may rewrite `region` under them; every write throws
// kPermissionDenied (read_only.cpp).
std::unique_ptr<EngineBase> make_read_only_engine(std::unique_ptr<EngineBase> reader, const Region& region);
// Throws kEngineUnavailable (naming the engines that are built) unless `engine` is built.
void require_engine_built(Engine engine);

// Called by Region::create, and by cold-start recovery (recovery.hpp) with the admin lock
// held and no other live attachment: prepares the engine area and control words for
// `engine` (they may hold another engine's state, or stale locks). `stripes` is the
// striped engine's stripe count.
void switch_engine_state(Region& region, std::uint32_t engine, std::uint32_t stripes);

// Before cold-start recovery touches the slots: finishes what the active engine may have
// left in flight that is not a lock (the lock-free engine's published operations).
void settle_engine_state(Region& region, std::uint32_t own_entry);


}  // namespace shmht
