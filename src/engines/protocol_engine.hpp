// engines/protocol_engine.hpp - the write paths every locking engine shares, written once
// over a Protocol that says how to exclude.
//
// An engine = ProtocolEngine<Protocol>. The Protocol supplies:
//   explicit Protocol(TableContext&);
//   class WriteScope {                      // exclusive access to a growing slot range of one array
//     WriteScope(Protocol&, const layout::SlotArray&, std::uint64_t first_slot,
//                const WriteScope* outer = nullptr);
//     void cover(std::uint64_t slot);       // extend the range up to `slot` (ascending only)
//     ~WriteScope();                        // release everything (write sections end here)
//   };
//     `outer` is a scope the caller still holds on the previous (older) array while it
//     opens this one on the next: a group move (growth.hpp). Protocols whose locks are
//     not in the arrays (global, striped) count what `outer` holds as held.
//   class ExclusiveScope {                  // every writer and reader excluded; on entry it
//     explicit ExclusiveScope(Protocol&);   // takes over what dead processes held and
//     std::uint64_t repaired() const;       // repairs (repair_and_recount below)
//   };
//   Readers, one of:
//     class ReadScope, as WriteScope but shared (locking readers: global, striped); or
//     ValueLength lookup(const HashedKey&, std::span<char>, std::string*) and
//     bool copy_group(const growth::ArrayView&, std::uint64_t group, std::vector<KeyValue>*)
//     bool copy_home_range(const growth::ArrayView&, std::uint64_t begin, std::uint64_t end,
//                          std::vector<KeyValue>*)   (optimistic readers: seqlock), false when
//     the view went stale (the caller takes a fresh one and copies again).
// WriteScope, ExclusiveScope acquisition and reads may throw NeedsRecovery when they
// meet a lock held by a dead process: the engine then runs an ExclusiveScope (which
// repairs) and retries the operation from the start. Nothing has been written when it
// is thrown: writers write only after the whole range is covered.
//
// GROWTH (growth.hpp has the protocol). Every operation starts from the arrays the growth
// word names (TableContext::view). A write during a migration first moves its key's home
// group, and a few claimed groups more, under the same write scopes as any write (the
// old array's before the new one's); then it writes in the current array. Right after a
// scope takes the key's home bucket (nobody can move that group meanwhile), the growth
// word is compared with the view: if it moved, the write starts again from a fresh view.
// A write that finds no room starts a growth (or finishes the migration under way) and
// starts again; only when the table cannot grow does it fail (kTableFull naming
// max_bytes, or kNoSpace).
//
// Records are written before the scope is entered and freed after it ends: the record
// is private until a slot points at it, and unreachable once no slot does (for
// optimistic readers, the freeing happens after the bucket versions moved: see arena.hpp).
//
// Read-modify-write (take, compare_and_set) reads the key's value under the same
// WriteScope as the change, so nothing can come between: the scope covers the key's slot
// before the value is read, and every slot the change moves before anything is written.
// erase is take without the copy; compare_and_set ends as insert, assign or erase do,
// through the same helpers (link_new, overwrite_at, erase_at) and fault points.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "hash.hpp"

#include "engines/engine.hpp"
#include "engines/migration_steps.hpp"
#include "engines/owner.hpp"
#include "engines/recovery.hpp"
#include "fault_injection.hpp"
#include "robin_hood.hpp"
#include "shmht/error.hpp"

namespace shmht {

// The repair every engine runs with everyone excluded, after a process died inside a
// write (engines/recovery.hpp), crediting the recount to this handle's entry.
inline std::uint64_t repair_and_recount(TableContext& ctx) {
  return recovery::repair_and_recount(ctx.region(), ctx.view(), ctx.entry_index());
}

// A record reached by a caller that excludes writers (a lock holder): invalid means corrupt.
inline const std::byte* record_or_throw(TableContext& ctx, std::uint64_t word, layout::RecordHeader* header) {
  const std::byte* record = ctx.checked_record(word, header);
  if (record == nullptr) throw_invalid_record(ctx, word);
  return record;
}

// Lookup for protocols whose readers exclude writers (global, striped): plain reads.
// `touch` extends the reader's locked range before each slot is read.
template <class Touch>
ValueLength locked_lookup(TableContext& ctx, const layout::SlotArray& slots, const HashedKey& key, std::span<char> out,
                          std::string* out_string, Touch&& touch) {
  layout::RecordHeader header{};
  const std::byte* record = nullptr;
  const robin_hood::Probe probe = robin_hood::probe(
      slots, slots.home_of(key.hash), layout::SlotArray::tag_of_hash(key.hash),
      [&](std::uint64_t word) {
        ctx.prefetch_record(word, key.bytes.size());
        record = record_or_throw(ctx, word, &header);
        return record_key(record, header) == key.bytes;
      },
      touch);
  if (!probe.found) return ValueLength::absent();
  const std::string_view value = record_value(record, header);
  if (out_string != nullptr) {
    out_string->assign(value);
  } else if (!value.empty() && value.size() <= out.size()) {  // memcpy's pointers must not be null, even for 0 bytes
    std::memcpy(out.data(), value.data(), value.size());
  }
  return ValueLength(value.size());
}

// Copies the entries whose home is in [begin, end) of `slots`, for the same protocols.
template <class Touch>
void locked_copy_home_range(TableContext& ctx, const layout::SlotArray& slots, std::uint64_t begin, std::uint64_t end,
                            std::vector<KeyValue>* out, Touch&& touch) {
  robin_hood::visit_home_range(
      slots, begin, end,
      [&](std::uint64_t, std::uint64_t word) {
        layout::RecordHeader header{};
        const std::byte* record = record_or_throw(ctx, word, &header);
        out->emplace_back(record_key(record, header), record_value(record, header));
      },
      touch);
}

// Whether a bucket's home group has moved to the next array (a lock holder's read).
inline bool group_moved(const layout::SlotArray& slots, std::uint64_t bucket) noexcept {
  return layout::is_moved(slots.bucket(bucket).control.load(std::memory_order_acquire));
}

// Home groups of an old array <-> home slots of the next one (exact doubling, growth.hpp).
inline constexpr std::uint64_t kNewSlotsPerGroup = 2 * layout::kSlotsPerBucket;
inline std::uint64_t group_end_in_old(const layout::SlotArray& old, std::uint64_t group) noexcept {
  return std::min((group + 1) * layout::kSlotsPerBucket, old.home_slots());
}
inline std::uint64_t group_end_in_new(const layout::SlotArray& current, std::uint64_t group) noexcept {
  return std::min((group + 1) * kNewSlotsPerGroup, current.home_slots());
}

// The ExclusiveScope of protocols that lock in units (buckets, stripes): every unit in
// address order, a unit held by a dead process taken over rather than waited for; if any
// was, the table is repaired before the scope's owner runs. Protocol supplies
//   std::uint64_t unit_count(bool first);  // the units to hold; asked again (first = false) once
//                                          // they are all held, it may add units after them
//                                          // (never remove any)
//   bool lock_unit(std::uint64_t unit, bool take_over_dead);  // true: taken from the dead
//   void unlock_unit(std::uint64_t unit) noexcept;
//   TableContext& context();
template <class Protocol>
class AllUnitsScope {
 public:
  explicit AllUnitsScope(Protocol& p) : p_(p) {
    bool took_over_dead = false;
    try {
      // A protocol whose units are in the slot arrays (seqlock) adds the buckets of an
      // array that a growth published while the sweep ran; the sweep ends only when a
      // fresh count adds nothing (growth.hpp: those buckets come after, in address order).
      for (std::uint64_t units = p_.unit_count(/*first=*/true); held_ < units;) {
        took_over_dead |= p_.lock_unit(held_, true);
        if (++held_ == units) units = p_.unit_count(/*first=*/false);
      }
      if (took_over_dead) repaired_ = repair_and_recount(p_.context());
    } catch (...) {
      release();
      throw;
    }
  }
  ~AllUnitsScope() { release(); }
  AllUnitsScope(const AllUnitsScope&) = delete;
  AllUnitsScope& operator=(const AllUnitsScope&) = delete;
  std::uint64_t repaired() const noexcept { return repaired_; }

 private:
  void release() noexcept {
    for (std::uint64_t u = held_; u > 0; --u) p_.unlock_unit(u - 1);
    held_ = 0;
  }
  Protocol& p_;
  std::uint64_t held_ = 0;
  std::uint64_t repaired_ = 0;
};

template <class Protocol>
concept LockingReaders = requires { typename Protocol::ReadScope; };

template <class Protocol>
class ProtocolEngine final : public EngineBase {
 public:
  explicit ProtocolEngine(TableContext& context) : ctx_(context), protocol_(context), migration_(context, 0) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override {
    return with_recovery([&] { return lookup(key, out, nullptr).optional(); });
  }
  bool get(const HashedKey& key, std::string* out) override {
    return with_recovery([&] { return lookup(key, {}, out).found(); });
  }
  bool contains(const HashedKey& key) override {
    return with_recovery([&] { return lookup(key, {}, nullptr).found(); });
  }

  // A protocol whose readers lock (global) looks a whole batch up under one lock; the
  // others look each key up as get() does, without a virtual call per key. A batch
  // that meets a dead writer's lock is repaired and answered again from its first key.
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) override {
    with_recovery([&] {
      if constexpr (requires { protocol_.lookup_batch(keys, want_values, out); }) {
        protocol_.lookup_batch(keys, want_values, out);
      } else {
        out.answer_each(keys, want_values, [&](const HashedKey& key, std::span<char> room) { return lookup(key, room, nullptr); });
      }
      return true;
    });
  }

  bool insert(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    bool linked = false;
    try {
      const bool inserted = with_recovery([&] {
        return write(key, [&](const layout::SlotArray& slots, WriteScope& scope) -> std::optional<bool> {
          const robin_hood::Probe probe = probe_for(slots, key, scope);
          if (probe.found) return false;
          if (!link_new(slots, key, probe, fresh, scope)) return std::nullopt;
          return true;
        });
      });
      linked = inserted;
    } catch (...) {
      free(fresh);
      throw;
    }
    if (!linked) free(fresh);
    return linked;
  }

  bool assign(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    NewRecord replaced{0, 0};
    bool inserted = false;
    try {
      inserted = with_recovery([&] {
        return write(key, [&](const layout::SlotArray& slots, WriteScope& scope) -> std::optional<bool> {
          const robin_hood::Probe probe = probe_for(slots, key, scope);
          if (!probe.found) {
            if (!link_new(slots, key, probe, fresh, scope)) return std::nullopt;
            return true;
          }
          replaced = overwrite_at(slots, probe.slot, fresh);
          return false;
        });
      });
    } catch (...) {
      free(fresh);
      throw;
    }
    if (!inserted) free(replaced);
    return inserted;
  }

  bool erase(const HashedKey& key) override { return take(key, nullptr); }

  // The value is copied under the same scope as the erase: no write can come between.
  bool take(const HashedKey& key, std::string* old) override {
    NewRecord erased{0, 0};
    const bool found = with_recovery([&] {
      return write(key, [&](const layout::SlotArray& slots, WriteScope& scope) -> std::optional<bool> {
        const robin_hood::Probe probe = probe_for(slots, key, scope);
        if (!probe.found) return false;
        if (old != nullptr) old->assign(value_at(slots, probe.slot));
        erased = erase_at(slots, probe.slot, scope);
        return true;
      });
    });
    if (found) free(erased);
    return found;
  }

  // The comparison and the change happen under one WriteScope, which covers every slot
  // the change touches, so the value compared is the value replaced. Like insert and
  // assign, the desired record is written before the scope and freed after it if unused.
  bool compare_and_set(const HashedKey& key, std::optional<std::string_view> expected,
                       std::optional<std::string_view> desired, std::optional<std::string>* current) override {
    const std::optional<NewRecord> fresh = desired ? std::optional(write_record(key, *desired)) : std::nullopt;
    NewRecord unlinked{0, 0};  // the record the change took out of the table, if any
    bool applied = false;
    try {
      applied = with_recovery([&] {
        return write(key, [&](const layout::SlotArray& slots, WriteScope& scope) -> std::optional<bool> {
          const robin_hood::Probe probe = probe_for(slots, key, scope);
          const std::optional<std::string_view> seen =
              probe.found ? std::optional(value_at(slots, probe.slot)) : std::nullopt;
          if (seen != expected) {
            if (current != nullptr) *current = seen ? std::optional<std::string>(std::in_place, *seen) : std::nullopt;
            return false;
          }
          if (!probe.found) {
            if (fresh && !link_new(slots, key, probe, *fresh, scope)) return std::nullopt;
          } else if (fresh) {
            unlinked = overwrite_at(slots, probe.slot, *fresh);
          } else {
            unlinked = erase_at(slots, probe.slot, scope);
          }
          return true;
        });
      });
    } catch (...) {
      if (fresh) free(*fresh);
      throw;
    }
    if (fresh && !applied) free(*fresh);
    if (unlinked.bytes != 0) free(unlinked);
    return applied;
  }

  std::uint32_t copy_home_range(std::uint32_t generation, std::uint64_t begin, std::uint64_t end,
                                std::vector<KeyValue>* out) override {
    const std::size_t keep = out->size();
    return with_recovery([&] {
      for (;;) {
        out->resize(keep);  // drop a partial copy from an attempt that met a dead holder or a growth
        const growth::ArrayView view = ctx_.view();
        if (view.generation < generation) throw_stale_range(generation, view.generation);
        const unsigned shift = view.generation - generation;
        const std::uint64_t b = begin << shift, e = std::min(end << shift, view.current.home_slots());
        if (copy_in_view(view, b, e, out)) return view.generation;
      }
    });
  }

  std::uint64_t with_exclusive_access(const std::function<void()>& fn) override {
    typename Protocol::ExclusiveScope scope(protocol_);
    fn();
    return scope.repaired();
  }

 private:
  using WriteScope = typename Protocol::WriteScope;
  // Runs `op`; if it meets a lock left by a dead process, repairs and runs it again.
  template <class Op>
  auto with_recovery(Op&& op) {
    for (;;) {
      try {
        return op();
      } catch (const NeedsRecovery&) {
        if (ctx_.read_only()) throw_needs_write_access(ctx_, "recovering what a dead writer left locked");
        typename Protocol::ExclusiveScope repair(protocol_);
      }
    }
  }

  // Generations only grow: a view older than a range taken from an earlier view means
  // the growth word went backwards, which only a damaged file does.
  [[noreturn]] void throw_stale_range(std::uint32_t asked, std::uint32_t now) const {
    throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": corrupt table: the growth word went back from slot array generation " +
                                         std::to_string(asked) + " to " + std::to_string(now) + "; run `shmht check`");
  }

  // ---- reads ---------------------------------------------------------------------

  ValueLength lookup(const HashedKey& key, std::span<char> out, std::string* out_string) {
    if constexpr (LockingReaders<Protocol>) {
      return locked_reader_lookup(key, out, out_string);
    } else {
      return protocol_.lookup(key, out, out_string);
    }
  }

  // A locking reader takes the key's home bucket in the array that may hold its group
  // (the old one during a migration), reads MOVED there and then checks the view still
  // holds: that array was not punched before the check, and the group cannot move while
  // the reader holds its home bucket.
  ValueLength locked_reader_lookup(const HashedKey& key, std::span<char> out, std::string* out_string)
    requires LockingReaders<Protocol>
  {
    using ReadScope = typename Protocol::ReadScope;
    for (;;) {
      const growth::ArrayView view = ctx_.view();
      if (view.migrating) {
        const std::uint64_t home = view.old.home_of(key.hash);
        ReadScope scope(protocol_, view.old, home);
        detail::fault_point(testing::FaultPoint::kReadLocked);
        const bool moved = group_moved(view.old, layout::SlotArray::bucket_of_slot(home));
        if (!ctx_.arrays().unchanged(view)) continue;
        if (!moved) return locked_lookup(ctx_, view.old, key, out, out_string, [&](std::uint64_t s) { scope.cover(s); });
      }
      ReadScope scope(protocol_, view.current, view.current.home_of(key.hash));
      detail::fault_point(testing::FaultPoint::kReadLocked);
      if (!ctx_.arrays().unchanged(view)) continue;
      return locked_lookup(ctx_, view.current, key, out, out_string, [&](std::uint64_t s) { scope.cover(s); });
    }
  }

  // Copies the entries whose home is in [b, e) of view.current (b a group boundary), each
  // group from the array that holds it. False if the view went stale.
  bool copy_in_view(const growth::ArrayView& view, std::uint64_t b, std::uint64_t e, std::vector<KeyValue>* out) {
    if (!view.migrating) return copy_range_of(view, view.current, b, e, out);
    for (std::uint64_t group = b / kNewSlotsPerGroup; group * kNewSlotsPerGroup < e; ++group) {
      if (!copy_group(view, group, out)) return false;
    }
    return true;
  }

  bool copy_range_of(const growth::ArrayView& view, const layout::SlotArray& slots, std::uint64_t b, std::uint64_t e,
                     std::vector<KeyValue>* out) {
    if constexpr (LockingReaders<Protocol>) {
      typename Protocol::ReadScope scope(protocol_, slots, b);
      if (!ctx_.arrays().unchanged(view)) return false;
      locked_copy_home_range(ctx_, slots, b, e, out, [&](std::uint64_t s) { scope.cover(s); });
      return true;
    } else {
      return protocol_.copy_home_range(view, slots, b, e, out);
    }
  }

  // One home group of the old array, from whichever array holds it now.
  bool copy_group(const growth::ArrayView& view, std::uint64_t group, std::vector<KeyValue>* out) {
    if constexpr (LockingReaders<Protocol>) {
      typename Protocol::ReadScope scope(protocol_, view.old, group * layout::kSlotsPerBucket);
      const bool moved = group_moved(view.old, group);
      if (!ctx_.arrays().unchanged(view)) return false;
      if (!moved) {
        locked_copy_home_range(ctx_, view.old, group * layout::kSlotsPerBucket, group_end_in_old(view.old, group), out,
                               [&](std::uint64_t s) { scope.cover(s); });
        return true;
      }
      typename Protocol::ReadScope next(protocol_, view.current, group * kNewSlotsPerGroup, &scope);
      locked_copy_home_range(ctx_, view.current, group * kNewSlotsPerGroup, group_end_in_new(view.current, group), out,
                             [&](std::uint64_t s) { next.cover(s); });
      return true;
    } else {
      return protocol_.copy_group(view, group, out);
    }
  }

  // ---- writes --------------------------------------------------------------------

  // Runs change(slots, scope) on the array that holds the key's group, under a scope
  // whose first bucket is the key's home: nullopt from it means "no room for the key",
  // and the write grows the table (or finishes the migration in the way) and runs again.
  template <class Change>
  bool write(const HashedKey& key, Change&& change) {
    for (;;) {
      const growth::ArrayView view = ctx_.view();
      if (view.migrating) {
        migration_.help(view, key.hash, [&](std::uint64_t group) { move_group(view, group); },
                        [&] { finish_migration(view); });
      }
      std::optional<bool> done;
      {
        WriteScope scope(protocol_, view.current, view.current.home_of(key.hash));
        if (!ctx_.arrays().unchanged(view)) continue;  // a growth began or ended: start again
        done = change(view.current, scope);
      }
      if (done) {
        if (migration_.load_check_due()) migration_.grow_if_loaded(view, counted_items(ctx_.region()));
        return *done;
      }
      migration_.grow(view, [&] { finish_migration(view); });
    }
  }

  // Moves one home group of view.old into view.current, unless it has moved already or
  // the view went stale (then the caller's next view() sees why). Under the old group's
  // home bucket first, then the new array's buckets from the group's first new home.
  void move_group(const growth::ArrayView& view, std::uint64_t group) {
    const layout::SlotArray& old = view.old;
    const layout::SlotArray& current = view.current;
    // MOVED is never cleared: seen set, the group has moved (the write that asks first
    // for its own key's group mostly finds it so, and takes no lock for it).
    if (group_moved(old, group)) return;
    WriteScope old_scope(protocol_, old, group * layout::kSlotsPerBucket);
    const bool moved = group_moved(old, group);
    if (!ctx_.arrays().unchanged(view) || moved) return;
    moving_.clear();
    robin_hood::visit_home_range(
        old, group * layout::kSlotsPerBucket, group_end_in_old(old, group),
        [&](std::uint64_t, std::uint64_t word) { moving_.push_back(word); }, [&](std::uint64_t s) { old_scope.cover(s); });
    // Each key's new home needs its hash, so its record: request them all before the
    // first is read (their misses then overlap; one at a time, they were three quarters
    // of a move's time).
    for (const std::uint64_t word : moving_) ctx_.prefetch_record(word, 16);
    WriteScope new_scope(protocol_, current, group * kNewSlotsPerGroup, &old_scope);
    auto cover = [&](std::uint64_t s) { new_scope.cover(s); };
    purge_copies_of_group(current, group, cover);
    for (std::size_t i = 0; i < moving_.size(); ++i) {
      const std::uint64_t word = moving_[i];
      layout::RecordHeader header{};
      const std::byte* record = record_or_throw(ctx_, word, &header);
      const std::uint64_t hash = hash_key(record_key(record, header), ctx_.fixed().hash_seed);
      const robin_hood::Probe probe = robin_hood::probe(
          current, current.home_of(hash), layout::Slot::tag_of(word), [](std::uint64_t) { return false; }, cover);
      const robin_hood::InsertPlan plan = robin_hood::plan_insert(current, probe.slot, probe.dist, cover);
      if (!plan.ok) throw_no_room_to_move(group);
      robin_hood::apply_insert(current, plan, layout::Slot::encode(layout::Slot::tag_of(word), 0, layout::Slot::offset_of(word)));
      if (i == 0) detail::fault_point(testing::FaultPoint::kGroupMoveMidway);
    }
    old.bucket(group).control.fetch_or(layout::kMovedBit, std::memory_order_release);
    detail::fault_point(testing::FaultPoint::kGroupMoved);
  }

  // A mover killed part way leaves copies of its group in the new array while the old
  // one still holds the group (not MOVED). Nobody else writes keys of an unmoved group
  // there, so whatever the new array holds with a home in the group's range is such a
  // copy: removed (slot words only: the records are the old array's) before the move.
  template <class Cover>
  void purge_copies_of_group(const layout::SlotArray& current, std::uint64_t group, Cover&& cover) {
    const std::uint64_t begin = group * kNewSlotsPerGroup, end = group_end_in_new(current, group);
    for (;;) {
      std::optional<std::uint64_t> copy;
      robin_hood::visit_home_range(
          current, begin, end,
          [&](std::uint64_t slot, std::uint64_t) {
            if (!copy) copy = slot;
          },
          cover);
      if (!copy) return;
      robin_hood::apply_erase(current, *copy, robin_hood::erase_run_end(current, *copy, cover));
    }
  }

  [[noreturn]] void throw_no_room_to_move(std::uint64_t group) const {
    throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": home group " + std::to_string(group) +
                                         " does not fit into the larger slot array; run `shmht check`");
  }

  // Every group not moved yet (a stopped or killed claimant's), then the migration is
  // over. The growth word is flipped under the old array's first group, whose bucket (or
  // stripe, or the mutex) every ExclusiveScope holds: check and recovery, which read the
  // old array under exclusion, never see it end (and be punched) under them. The punch
  // comes after, outside the lock: from then on nobody trusts a read of the old array.
  void finish_migration(const growth::ArrayView& view) {
    for (std::uint64_t group = 0; group < view.old.group_count(); ++group) {
      if (!group_moved(view.old, group)) move_group(view, group);
      if (!ctx_.arrays().unchanged(view)) return;
    }
    detail::fault_point(testing::FaultPoint::kMigrationFinishing);
    bool finished = false;
    {
      WriteScope first_group(protocol_, view.old, 0);
      finished = ctx_.arrays().unchanged(view) && growth::mark_finished(ctx_.region(), view);
    }
    if (finished) growth::reclaim(ctx_.region(), ctx_.arrays(), view);
  }

  NewRecord write_record(const HashedKey& key, std::string_view value) { return ctx_.write_new_record(key, value); }

  void free(const NewRecord& record) { ctx_.arena().free(record.offset, record.bytes); }

  // The value of the record the slot points at (the caller's scope covers the slot).
  std::string_view value_at(const layout::SlotArray& slots, std::uint64_t slot) {
    layout::RecordHeader header{};
    const std::byte* record = record_or_throw(ctx_, slots.load(slot), &header);
    return record_value(record, header);
  }

  // Re-points the key's slot at `fresh`; returns the record it replaced (freed by the
  // caller after the scope).
  NewRecord overwrite_at(const layout::SlotArray& slots, std::uint64_t slot, const NewRecord& fresh) {
    const std::uint64_t word = slots.load(slot);
    const NewRecord replaced = described(word);
    slots.store(slot, layout::Slot::encode(layout::Slot::tag_of(word), layout::Slot::dist_of(word), fresh.offset));
    detail::fault_point(testing::FaultPoint::kAfterSlotWrite);
    return replaced;
  }

  // Erases the key at `slot` with a backward shift; returns its record (freed by the
  // caller after the scope).
  NewRecord erase_at(const layout::SlotArray& slots, std::uint64_t slot, WriteScope& scope) {
    const NewRecord erased = described(slots.load(slot));
    const std::uint64_t last = robin_hood::erase_run_end(slots, slot, [&](std::uint64_t s) { scope.cover(s); });
    robin_hood::apply_erase(slots, slot, last);
    detail::fault_point(testing::FaultPoint::kBeforeUnlock);
    ctx_.add_items(-1);
    return erased;
  }

  NewRecord described(std::uint64_t word) {
    layout::RecordHeader header{};
    record_or_throw(ctx_, word, &header);
    return {layout::Slot::offset_of(word), record_bytes_for(header.key_bytes, header.value_bytes)};
  }

  robin_hood::Probe probe_for(const layout::SlotArray& slots, const HashedKey& key, WriteScope& scope) {
    return robin_hood::probe(
        slots, slots.home_of(key.hash), layout::SlotArray::tag_of_hash(key.hash),
        [&](std::uint64_t word) {
          layout::RecordHeader header{};
          const std::byte* record = record_or_throw(ctx_, word, &header);
          return record_key(record, header) == key.bytes;
        },
        [&](std::uint64_t s) { scope.cover(s); });
  }

  // Links a written record at the probe's insertion point. False when no slot within the
  // probe-distance limit is free (nothing in the slot array changed): the write grows
  // the table and tries again.
  bool link_new(const layout::SlotArray& slots, const HashedKey& key, const robin_hood::Probe& probe, const NewRecord& fresh,
                WriteScope& scope) {
    const robin_hood::InsertPlan plan =
        robin_hood::plan_insert(slots, probe.slot, probe.dist, [&](std::uint64_t s) { scope.cover(s); });
    if (!plan.ok) return false;
    robin_hood::apply_insert(slots, plan, layout::Slot::encode(layout::SlotArray::tag_of_hash(key.hash), 0, fresh.offset));
    detail::fault_point(testing::FaultPoint::kBeforeUnlock);
    ctx_.add_items(1);
    migration_.count_insert();
    return true;
  }

  TableContext& ctx_;
  Protocol protocol_;
  std::vector<std::uint64_t> moving_;  // a group's slot words while it moves (reused)
  MigrationSteps migration_;
};

}  // namespace shmht
