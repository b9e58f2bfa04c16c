// engines/protocol_engine.hpp - the write paths every locking engine shares, written once
// over a Protocol that says how to exclude.
//
// An engine = ProtocolEngine<Protocol>. The Protocol supplies:
//   explicit Protocol(TableContext&);
//   class WriteScope {                      // exclusive access to a growing slot range
//     WriteScope(Protocol&, std::uint64_t first_slot);
//     void cover(std::uint64_t slot);       // extend the range up to `slot` (ascending only)
//     ~WriteScope();                        // release everything (write sections end here)
//   };
//   class ExclusiveScope {                  // every writer and reader excluded; on entry it
//     explicit ExclusiveScope(Protocol&);   // takes over what dead processes held and
//     std::uint64_t repaired() const;       // repairs (repair_and_recount below)
//   };
//   ValueLength lookup(const HashedKey&, std::span<char> out, std::string* out_string);
//   void copy_home_range(std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>*);
// WriteScope, ExclusiveScope acquisition and lookup may throw NeedsRecovery when they
// meet a lock held by a dead process: the engine then runs an ExclusiveScope (which
// repairs) and retries the operation from the start. Nothing has been written when it
// is thrown: writers write only after the whole range is covered.
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

#include <string>

#include "engines/engine.hpp"
#include "engines/owner.hpp"
#include "engines/recovery.hpp"
#include "fault_injection.hpp"
#include "robin_hood.hpp"
#include "shmht/error.hpp"

namespace shmht {

// The repair every engine runs with everyone excluded, after a process died inside a
// write (engines/recovery.hpp), crediting the recount to this handle's entry.
inline std::uint64_t repair_and_recount(TableContext& ctx) {
  return recovery::repair_and_recount(ctx.region(), ctx.slots(), ctx.entry_index());
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
ValueLength locked_lookup(TableContext& ctx, const HashedKey& key, std::span<char> out, std::string* out_string,
                          Touch&& touch) {
  const auto& slots = ctx.slots();
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

// copy_home_range for the same protocols.
template <class Touch>
void locked_copy_home_range(TableContext& ctx, std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out,
                            Touch&& touch) {
  robin_hood::visit_home_range(
      ctx.slots(), begin, end,
      [&](std::uint64_t, std::uint64_t word) {
        layout::RecordHeader header{};
        const std::byte* record = record_or_throw(ctx, word, &header);
        out->emplace_back(record_key(record, header), record_value(record, header));
      },
      touch);
}

// The ExclusiveScope of protocols that lock in units (buckets, stripes): every unit in
// address order, a unit held by a dead process taken over rather than waited for; if any
// was, the table is repaired before the scope's owner runs. Protocol supplies
//   std::uint64_t unit_count() const;
//   bool lock_unit(std::uint64_t unit, bool take_over_dead);  // true: taken from the dead
//   void unlock_unit(std::uint64_t unit) noexcept;
//   TableContext& context();
template <class Protocol>
class AllUnitsScope {
 public:
  explicit AllUnitsScope(Protocol& p) : p_(p) {
    bool took_over_dead = false;
    try {
      for (const std::uint64_t units = p_.unit_count(); held_ < units; ++held_) took_over_dead |= p_.lock_unit(held_, true);
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
    for (std::uint64_t u = 0; u < held_; ++u) p_.unlock_unit(u);
    held_ = 0;
  }
  Protocol& p_;
  std::uint64_t held_ = 0;
  std::uint64_t repaired_ = 0;
};

template <class Protocol>
class ProtocolEngine final : public EngineBase {
 public:
  explicit ProtocolEngine(TableContext& context) : ctx_(context), protocol_(context) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override {
    return with_recovery([&] { return protocol_.lookup(key, out, nullptr).optional(); });
  }
  bool get(const HashedKey& key, std::string* out) override {
    return with_recovery([&] { return protocol_.lookup(key, {}, out).found(); });
  }
  bool contains(const HashedKey& key) override {
    return with_recovery([&] { return protocol_.lookup(key, {}, nullptr).found(); });
  }

  // A protocol whose readers lock (global) looks a whole batch up under one lock; the
  // others look each key up as get() does, without a virtual call per key. A batch
  // that meets a dead writer's lock is repaired and answered again from its first key.
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) override {
    with_recovery([&] {
      if constexpr (requires { protocol_.lookup_batch(keys, want_values, out); }) {
        protocol_.lookup_batch(keys, want_values, out);
      } else {
        out.answer_each(keys, want_values,
                        [&](const HashedKey& key, std::span<char> room) { return protocol_.lookup(key, room, nullptr); });
      }
      return true;
    });
  }

  bool insert(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    const bool inserted = with_recovery([&] {
      WriteScope scope(protocol_, home_of(key));
      const robin_hood::Probe probe = probe_for(key, scope);
      if (probe.found) return false;
      link_new(key, probe, fresh, scope);
      return true;
    });
    if (!inserted) free(fresh);
    return inserted;
  }

  bool assign(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    NewRecord replaced{0, 0};
    const bool inserted = with_recovery([&] {
      WriteScope scope(protocol_, home_of(key));
      const robin_hood::Probe probe = probe_for(key, scope);
      if (!probe.found) {
        link_new(key, probe, fresh, scope);
        return true;
      }
      replaced = overwrite_at(probe.slot, fresh);
      return false;
    });
    if (!inserted) free(replaced);
    return inserted;
  }

  bool erase(const HashedKey& key) override { return take(key, nullptr); }

  // The value is copied under the same scope as the erase: no write can come between.
  bool take(const HashedKey& key, std::string* old) override {
    NewRecord erased{0, 0};
    const bool found = with_recovery([&] {
      WriteScope scope(protocol_, home_of(key));
      const robin_hood::Probe probe = probe_for(key, scope);
      if (!probe.found) return false;
      if (old != nullptr) old->assign(value_at(probe.slot));
      erased = erase_at(probe.slot, scope);
      return true;
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
    const bool applied = with_recovery([&] {
      WriteScope scope(protocol_, home_of(key));
      const robin_hood::Probe probe = probe_for(key, scope);
      const std::optional<std::string_view> seen = probe.found ? std::optional(value_at(probe.slot)) : std::nullopt;
      if (seen != expected) {
        if (current != nullptr) *current = seen ? std::optional<std::string>(std::in_place, *seen) : std::nullopt;
        return false;
      }
      if (!probe.found) {
        if (fresh) link_new(key, probe, *fresh, scope);  // on a full table it frees fresh and throws
      } else if (fresh) {
        unlinked = overwrite_at(probe.slot, *fresh);
      } else {
        unlinked = erase_at(probe.slot, scope);
      }
      return true;
    });
    if (fresh && !applied) free(*fresh);
    if (unlinked.bytes != 0) free(unlinked);
    return applied;
  }

  void copy_home_range(std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out) override {
    const std::size_t keep = out->size();
    with_recovery([&] {
      out->resize(keep);  // drop a partial copy from an attempt that met a dead holder
      protocol_.copy_home_range(begin, end, out);
      return true;
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

  std::uint64_t home_of(const HashedKey& key) const { return ctx_.slots().home_of(key.hash); }

  NewRecord write_record(const HashedKey& key, std::string_view value) { return ctx_.write_new_record(key, value); }

  void free(const NewRecord& record) { ctx_.arena().free(record.offset, record.bytes); }

  // The value of the record the slot points at (the caller's scope covers the slot).
  std::string_view value_at(std::uint64_t slot) {
    layout::RecordHeader header{};
    const std::byte* record = record_or_throw(ctx_, ctx_.slots().load(slot), &header);
    return record_value(record, header);
  }

  // Re-points the key's slot at `fresh`; returns the record it replaced (freed by the
  // caller after the scope).
  NewRecord overwrite_at(std::uint64_t slot, const NewRecord& fresh) {
    const std::uint64_t word = ctx_.slots().load(slot);
    const NewRecord replaced = described(word);
    ctx_.slots().store(slot, layout::Slot::encode(layout::Slot::tag_of(word), layout::Slot::dist_of(word), fresh.offset));
    detail::fault_point(testing::FaultPoint::kAfterSlotWrite);
    return replaced;
  }

  // Erases the key at `slot` with a backward shift; returns its record (freed by the
  // caller after the scope).
  NewRecord erase_at(std::uint64_t slot, WriteScope& scope) {
    const NewRecord erased = described(ctx_.slots().load(slot));
    const std::uint64_t last = robin_hood::erase_run_end(ctx_.slots(), slot, [&](std::uint64_t s) { scope.cover(s); });
    robin_hood::apply_erase(ctx_.slots(), slot, last);
    detail::fault_point(testing::FaultPoint::kBeforeUnlock);
    ctx_.add_items(-1);
    return erased;
  }

  NewRecord described(std::uint64_t word) {
    layout::RecordHeader header{};
    record_or_throw(ctx_, word, &header);
    return {layout::Slot::offset_of(word), record_bytes_for(header.key_bytes, header.value_bytes)};
  }

  robin_hood::Probe probe_for(const HashedKey& key, WriteScope& scope) {
    return robin_hood::probe(
        ctx_.slots(), home_of(key), layout::SlotArray::tag_of_hash(key.hash),
        [&](std::uint64_t word) {
          layout::RecordHeader header{};
          const std::byte* record = record_or_throw(ctx_, word, &header);
          return record_key(record, header) == key.bytes;
        },
        [&](std::uint64_t s) { scope.cover(s); });
  }

  // Links a written record at the probe's insertion point. On a full table the record
  // is returned to the arena and kTableFull thrown; nothing in the slot array changed.
  void link_new(const HashedKey& key, const robin_hood::Probe& probe, const NewRecord& fresh, WriteScope& scope) {
    const robin_hood::InsertPlan plan =
        robin_hood::plan_insert(ctx_.slots(), probe.slot, probe.dist, [&](std::uint64_t s) { scope.cover(s); });
    if (!plan.ok) {
      ctx_.arena().free(fresh.offset, fresh.bytes);
      throw_no_free_slot(ctx_);
    }
    robin_hood::apply_insert(ctx_.slots(), plan, layout::Slot::encode(layout::SlotArray::tag_of_hash(key.hash), 0, fresh.offset));
    detail::fault_point(testing::FaultPoint::kBeforeUnlock);
    ctx_.add_items(1);
  }

  TableContext& ctx_;
  Protocol protocol_;
};

}  // namespace shmht
