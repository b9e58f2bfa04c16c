// engines/lockfree_robin_hood.cpp - the lock-free engine: Robin Hood hashing in which no
// process ever waits for another.
//
// DESIGN (after Kelly, Pearlmutter, Maguire, "Concurrent Robin Hood Hashing", OPODIS 2018)
//   Same slot array as every engine (layout/slot.hpp): Robin Hood linear probing, no
//   wrap-around, backward-shift deletion. Each bucket's control word is a version (40
//   bits, never 0: see GROWTH) beside the MOVED bit. Every write is ONE multi-word CAS
//   (lockfree/kcas.hpp) over:
//     - the control word of every bucket whose slots it read to decide, bumped by one;
//     - every slot it changes (an insertion's whole right shift, an erasure's whole
//       backward shift, or the one slot an overwrite re-points);
//     - this attachment's item counter (items_added or items_removed),
//   except that a shift longer than kMaxShiftSlots (1,280; one KCAS holds 1,536 words) is
//   made in steps, each one KCAS, through PENDING SHIFTS (below).
//   The owner installs the versions, its counter and the slot of the key an overwrite or an
//   erase unlinks with one CAS each; the slots a shift moves words through, and empty ones,
//   with RDCSS (kcas.hpp, THE OWNER'S DIRECT INSTALLS, has why that split is safe): an
//   overwrite of a key in its home bucket is then five RMWs (two installs, the decision,
//   two finalizations) where it was seven.
//   The write is planned from an optimistic snapshot (versions noted as the probe enters
//   each bucket, exactly as a seqlock reader does); the KCAS succeeds only if no version
//   and no slot changed since, so the plan is applied to the state it was computed on, or
//   not at all, and the planner starts again. Where Kelly et al. validate readers with
//   sharded timestamps, the per-bucket versions play that role here.
//   Readers (get, contains, iteration) never write unless they meet an operation in
//   progress: they note versions, read slots and record bytes with relaxed atomic loads,
//   and re-check the versions (optimistic_read.hpp). A word that holds a descriptor
//   reference is finished (helped) before it is read.
//
// PENDING SHIFTS (long runs: near capacity one run can span thousands of slots)
//   A pending shift is one word in two adjacent slots, the second with dist + 1: the mark
//   robin_hood.hpp already gives an interrupted shift, so every engine's repair and cold
//   start complete it. Lookups stay correct across it (the first copy is found first, and
//   the Robin Hood order holds); it is the state between two steps:
//     - erase: the first step unlinks the key (and counts it: the linearization point)
//       and moves back the first kMaxShiftSlots words after it, leaving the next word
//       also in place; each further step moves back the words after that second copy
//       (finish_pending_shift), until the run ends. Erases never fail for lack of room.
//     - insert: a right shift to the first free slot moves its last kMaxShiftSlots words
//       first, leaving the word before them in two slots; the next attempt treats that
//       first copy as free (its word lives on next door) and so comes nearer the key,
//       until the last step links the key with the counter (the linearization point).
//   A step never cuts at a word that is already doubled (another shift's pending copy,
//   left by a process killed or an exception thrown between its steps): the word would
//   be in three slots, which nothing completes. It cuts just before (erase) or after
//   (insert) that pair instead, so a word is in at most two slots; a pair inside the
//   words a step moves moves with them, still a pair. check and cold start complete
//   whatever they find at a slot until its word is single.
//   Whoever writes a key whose word is doubled completes the pending shift first (an
//   overwrite of the first copy would leave the second naming a freed record); iteration
//   reports a doubled word once (drop_pending_copies); check completes every pending
//   shift first. A step always expects the versions of every slot it decided on,
//   including the first copy of the shift it completes and the slot after a doubled word
//   it overwrites. A pending shift an insert left is undone by whoever completes it, which
//   is fine: the insert was not linearized and starts again.
//
// GROWTH (growth.hpp has the protocol; this is how it is done without locks)
//   Every operation takes the arrays from the growth word (TableContext::view) and
//   works on explicit arrays: the current one, and during a migration the old one.
//   Invariants:
//     - a key's truth is the array in which its home bucket is not MOVED and (but for
//       generation 0) whose previous array has its group MOVED. MOVED is set once, never
//       cleared; a migration into generation g + 1 starts only after the one into g
//       finished (every group of g - 1 MOVED), so that array is always one array;
//     - every write's KCAS expects the version of its key's home bucket in the array it
//       writes (overwrite and erase included, decided from the home slot), noted without
//       MOVED: it takes effect only while that array is the key's truth;
//     - a version bump keeps MOVED and skips 0. Control words of this engine's arrays are
//       never 0 (version 1 from create, engine switch and growth::start); a punched
//       array reads as zeros, so a stopped writer's KCAS that names one fails, and a
//       snapshot that notes a 0 starts again (zero_version);
//     - readers (get, contains, batches, iteration) start in the old array during a
//       migration and go to the current one when the home bucket they noted is MOVED;
//       they validate their versions AND the growth word (Arrays::unchanged), so a read
//       of an array punched since never validates. They never move anything, never wait;
//     - MOVED in the current array's home bucket, or a version 0, while the growth word
//       still reads as the view's, is damage (kCorrupt), never a reason to retry forever.
//   A group move is ONE KCAS: the old home bucket's version (expected as noted without
//   MOVED, desired bumped | MOVED), the versions of the other old buckets read to collect
//   the group's keys (compared, kept), and in the new array every slot the Robin Hood
//   insertion of those keys changes plus a bumped version for every new bucket read to
//   plan it (planned on a private copy, move_group). It is linearizable at its decision:
//   before it the old array holds the group (a write of one of its keys there expects
//   the home version the move bumps; any change to a bucket holding its keys moves a
//   version the move expects), after it the new one holds exactly the same keys, pointing
//   at the same records; the item counters do not change. A pending shift in the old
//   array's group range is copied once (its second copy is the same record).
//   Who moves what: a write moves its key's group, then claims kGroupsPerClaim more
//   (fetch_add on the cursor) and moves those; whoever claims the last ones, any write
//   that finds no room, and one in kFinishEvery of the writes that find nothing left to
//   claim (the last claimant may be stopped or dead) scan every group's MOVED bit
//   (through the KCAS read path), move what is left and mark the migration finished
//   (growth::mark_finished, then reclaim punches the old array). A stopped mover stops nobody:
//   its claim is only a hint (the scan moves its groups), and a KCAS it published is
//   finished by whoever meets one of its words (its first is the old home bucket, which
//   every reader and mover of that group reads).
//   An insert that finds no room grows instead of failing (or finishes the migration in
//   the way) and runs again; so does one whose shift would be longer than one KCAS holds,
//   as long as the table can grow: pending shifts are the fallback at max_bytes. Every
//   kLoadCheckInterval inserts the load is checked and a growth started past kGrowAtLoad.
//
// PROGRESS
//   insert, assign, erase, take, compare_and_set: lock-free. A KCAS fails only because
//   another operation changed one of its words, i.e. completed; a process that meets an
//   unfinished operation finishes it itself instead of waiting for its owner, so a
//   stopped or killed owner delays nobody. get, contains and iteration: lock-free, not
//   wait-free: a reader retries when a write changed a bucket it read, and helps an
//   operation it meets. Nothing on any path waits for another process, sleeps, or spins
//   on a word.
//
// INVARIANTS
//   Between operations the slots satisfy the Robin Hood invariants (pending shifts
//   aside) and hold no reference words; a bucket's version changes whenever one of its
//   slots does; a record is reachable only while linked; it is freed (to its owner's
//   free list) only after the KCAS that unlinked it succeeded, which bumped the version
//   of the bucket that pointed at it, so an optimistic reader of the old record fails its
//   re-check.
//   The item counters change in the same KCAS as the slots: they always sum exactly.
//
// READ-MODIFY-WRITE (take, compare_and_set)
//   The value is read from the snapshot's record (atomic loads, like a reader) and the
//   write is the same KCAS as erase / insert / assign, expecting the versions the snapshot
//   noted, which include the version of the key's bucket. So the KCAS succeeds only if
//   the record read was linked, hence unchanged and not reused, from the read to the
//   KCAS: the value returned or compared is the value replaced. Offsets are not what is
//   compared (a freed record may come back at the same offset, ABA): versions are, and
//   they only grow. A comparison that does not match writes nothing; it is answered
//   only if the snapshot still validates after the value was read.
//
// MEMORY ORDER
//   KCAS installs and finalizations are acq_rel CASes; a record is written (relaxed
//   atomic stores) before the KCAS that links it, whose release publishes it to readers
//   that acquire the slot word. Readers' validation: acquire fence, then relaxed reloads of
//   the control words (the seqlock pattern of Boehm, MSPC 2012). A record reused after
//   the KCAS that unlinked it is rewritten only after a release fence (write_record), so a
//   reader that sees a byte of the new contents sees the version bump on its re-check:
//   portable, where TSO alone would have kept that order on x86-64 (the fence is free there).
//
// A PROCESS THAT DIES OR STOPS MID-OPERATION
//   A mover's KCAS is no different: helped like any other (a killed mover leaves no
//   partial copy behind, unlike a lock engine's). A process that stops with a view of
//   arrays since punched wakes to zeros: its snapshot's versions or its KCAS fail.
//   Before its KCAS is published: nothing is visible; a record it wrote but never linked
//   is leaked (one record, as in every engine). After: whoever meets one of its words
//   finishes the KCAS (both phases) as part of its own operation; the heir of its entry
//   finishes it before reusing the descriptor, and `check` and cold-start recovery
//   finish every published descriptor (Kcas::help_all). A process that dies between two
//   steps of a long shift leaves a pending shift: a valid state, completed by whoever
//   writes its key, by check, or by cold start's repair.
//   A stopped process holds no memory hostage either: records are reused by validation,
//   not by epochs, so nothing waits for a stopped reader to move on.
//
// WHY NOT A ProtocolEngine (protocol_engine.hpp)
//   That layer is built on write scopes that exclude; here nothing excludes. This file
//   reuses the rest: robin_hood.hpp's slot encoding and run rules, record_io.hpp, the
//   arena, optimistic_read.hpp (shared with the seqlock), and check.
#include <algorithm>
#include <array>
#include <span>
#include <vector>

#include "engines/engine.hpp"
#include "engines/lockfree/kcas.hpp"
#include "engines/migration_steps.hpp"
#include "engines/optimistic_read.hpp"
#include "fault_injection.hpp"
#include "growth.hpp"
#include "hash.hpp"
#include "robin_hood.hpp"

namespace shmht {
namespace {

using layout::Slot;
using lockfree::WordChange;

// One slot array of one view: where a snapshot reads and a KCAS writes. KCAS names
// words by region offset, computed here per array.
struct Target {
  layout::SlotArray slots;
  std::uint64_t base;               // region offset of bucket 0
  const growth::ArrayView* view;    // the operation's view (it outlives the Target)
  std::uint64_t control_offset(std::uint64_t bucket) const noexcept { return base + bucket * sizeof(layout::Bucket); }
  std::uint64_t slot_offset(std::uint64_t slot) const noexcept {
    return control_offset(layout::SlotArray::bucket_of_slot(slot)) + sizeof(std::uint64_t) * (1 + slot % layout::kSlotsPerBucket);
  }
};

// A bucket's next version: MOVED kept (a write may still change stale slots of a moved
// group's bucket in an old array: see GROWTH), the 40-bit version + 1, skipping 0 when
// it wraps (0 is what a punched array reads as: see zero_version).
constexpr std::uint64_t bumped(std::uint64_t version) noexcept {
  const std::uint64_t next = (version + 1) & lockfree::kValueMask;
  return (version & layout::kMovedBit) | (next == 0 ? 1 : next);
}
static_assert(lockfree::kValueMask < layout::kMovedBit && !lockfree::is_ref(layout::kMovedBit | lockfree::kValueMask),
              "a version with MOVED set is never taken for a descriptor reference");
static_assert(bumped(lockfree::kValueMask) == 1 && bumped(layout::kMovedBit | lockfree::kValueMask) == (layout::kMovedBit | 1),
              "versions wrap past 0 and keep MOVED");
static_assert(bumped(layout::kMovedBit | 6) == (layout::kMovedBit | 7));

class LockFreeEngine final : public EngineBase {
 public:
  explicit LockFreeEngine(TableContext& context)
      : ctx_(context), kcas_(context.region(), context.entry_index()) {}

  std::optional<std::size_t> get(const HashedKey& key, std::span<char> out) override { return lookup(key, out, nullptr).optional(); }
  bool get(const HashedKey& key, std::string* out) override { return lookup(key, {}, out).found(); }
  bool contains(const HashedKey& key) override { return lookup(key, {}, nullptr).found(); }
  // Each key as get() does, without a virtual call per key.
  void lookup_batch(std::span<const HashedKey> keys, bool want_values, BatchAnswers& out) override {
    out.answer_each(keys, want_values, [&](const HashedKey& key, std::span<char> room) { return lookup(key, room, nullptr); });
  }

  bool insert(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    return until_done(key, &fresh, [&](Snapshot& snap) -> std::optional<bool> {
      const Found found = probe(snap, key);
      if (!found.present) return link_new(snap, key, found, fresh) ? std::optional(true) : std::nullopt;
      if (!snap.still_valid()) return std::nullopt;
      ctx_.arena().free(fresh.offset, fresh.bytes);
      return false;
    });
  }

  bool assign(const HashedKey& key, std::string_view value) override {
    const NewRecord fresh = write_record(key, value);
    return until_done(key, &fresh, [&](Snapshot& snap) -> std::optional<bool> {
      const Found found = probe(snap, key);
      if (!found.present) return link_new(snap, key, found, fresh) ? std::optional(true) : std::nullopt;
      return overwrite(snap, found, fresh) ? std::optional(false) : std::nullopt;
    });
  }

  bool erase(const HashedKey& key) override { return take(key, nullptr); }

  // The value is read before the KCAS that erases: its success proves that no version
  // the snapshot noted moved, so the record stayed linked (and unchanged) since.
  bool take(const HashedKey& key, std::string* old) override {
    return until_done(key, nullptr, [&](Snapshot& snap) -> std::optional<bool> {
      const Found found = probe(snap, key);
      if (!found.present) return snap.still_valid() ? std::optional(false) : std::nullopt;
      if (old != nullptr) *old = value_of(found);
      return unlink(snap, found) ? std::optional(true) : std::nullopt;
    });
  }

  // Compare: the key's record, read through the snapshot. Set: the same KCAS as insert,
  // assign or erase, from the words and bucket versions of that snapshot. A write that
  // came between (even one that put back a record at the same offset, ABA) moved a
  // version the KCAS expects, so the KCAS fails and the attempt starts again; a freed
  // record is only reused after such a move (see INVARIANTS). A comparison that fails
  // stands only if the snapshot was still valid after the value was read.
  bool compare_and_set(const HashedKey& key, std::optional<std::string_view> expected,
                       std::optional<std::string_view> desired, std::optional<std::string>* current) override {
    const std::optional<NewRecord> fresh = desired ? std::optional(write_record(key, *desired)) : std::nullopt;
    const bool applied = until_done(key, fresh ? &*fresh : nullptr, [&](Snapshot& snap) -> std::optional<bool> {
      const Found found = probe(snap, key);
      if (found.present ? !expected || !value_equals(found, *expected) : expected.has_value()) {
        std::optional<std::string> seen;
        if (current != nullptr && found.present) seen = value_of(found);
        if (!snap.still_valid()) return std::nullopt;
        if (current != nullptr) *current = std::move(seen);
        return false;
      }
      if (!found.present) {
        if (!fresh) return snap.still_valid() ? std::optional(true) : std::nullopt;
        return link_new(snap, key, found, *fresh) ? std::optional(true) : std::nullopt;  // no room: grows
      }
      const bool done = fresh ? overwrite(snap, found, *fresh) : unlink(snap, found);
      return done ? std::optional(true) : std::nullopt;
    });
    if (fresh && !applied) ctx_.arena().free(fresh->offset, fresh->bytes);
    return applied;
  }

  // As ProtocolEngine::copy_home_range: the range scaled to the view's generation; during
  // a migration each home group of the old array is copied from the array that holds it.
  std::uint32_t copy_home_range(std::uint32_t generation, std::uint64_t begin, std::uint64_t end,
                                std::vector<KeyValue>* out) override {
    const std::size_t keep = out->size();
    for (;;) {
      out->resize(keep);  // drop a partial copy from an attempt a growth overtook
      const growth::ArrayView view = ctx_.view();
      if (view.generation < generation) {
        // Generations only grow: only a damaged file makes the growth word go back.
        throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": corrupt table: the growth word went back from slot array generation " +
                                             std::to_string(generation) + " to " + std::to_string(view.generation) +
                                             "; run `shmht check`");
      }
      const unsigned shift = view.generation - generation;
      const std::uint64_t b = begin << shift, e = std::min(end << shift, view.current.home_slots());
      if (copy_in_view(view, b, e, out)) return view.generation;
    }
  }

  // Entries with a home in [b, e) of view.current (b a group boundary during a migration),
  // each old group from the array that holds it. False if the view went stale.
  bool copy_in_view(const growth::ArrayView& view, std::uint64_t b, std::uint64_t e, std::vector<KeyValue>* out) {
    if (!view.migrating) return copy_range(target(view.current, view), b, e, out);
    for (std::uint64_t group = b / kNewSlotsPerGroup; group * kNewSlotsPerGroup < e; ++group) {
      if (!copy_group(view, group, out)) return false;
    }
    return true;
  }

  // One home group of view.old: from the old array if its home bucket, noted in the same
  // validated window as the copy, is not MOVED; from the current array otherwise.
  bool copy_group(const growth::ArrayView& view, std::uint64_t group, std::vector<KeyValue>* out) {
    const Target old = target(view.old, view);
    const std::size_t keep = out->size();
    for (;;) {
      if (!ctx_.arrays().unchanged(view)) return false;
      ReadWindow window(*this, old);
      window.enter(group * layout::kSlotsPerBucket);
      if (window.moved(group)) {
        return copy_range(target(view.current, view), group * kNewSlotsPerGroup, group_end_in_new(view.current, group), out);
      }
      if (optimistic::try_copy_home_range(ctx_, old.slots, window, group * layout::kSlotsPerBucket,
                                          group_end_in_old(view.old, group), out)) {
        drop_pending_copies(out, keep);
        return true;
      }
      out->resize(keep);
    }
  }

  // False if the view went stale (the caller starts again from a fresh one).
  bool copy_range(const Target& t, std::uint64_t begin, std::uint64_t end, std::vector<KeyValue>* out) {
    // Nothing can be locked, so a range that writers keep changing is split until the
    // pieces are small enough to read between two writes (one home slot at the least).
    constexpr int kAttemptsBeforeSplit = 4;
    const std::size_t keep = out->size();
    for (int attempt = 0; attempt < kAttemptsBeforeSplit || end - begin == 1; ++attempt) {
      ReadWindow window(*this, t);
      if (optimistic::try_copy_home_range(ctx_, t.slots, window, begin, end, out)) {
        drop_pending_copies(out, keep);
        return true;
      }
      out->resize(keep);
      if (!ctx_.arrays().unchanged(*t.view)) return false;
    }
    const std::uint64_t middle = begin + (end - begin) / 2;
    return copy_range(t, begin, middle, out) && copy_range(t, middle, end, out);
  }

  // A pending shift's word is in two adjacent slots of one home: visited one after the
  // other, so its second copy is the same key right after the first. Keys are unique.
  static void drop_pending_copies(std::vector<KeyValue>* out, std::size_t from) {
    const auto same_key = [](const KeyValue& a, const KeyValue& b) { return a.first == b.first; };
    out->erase(std::unique(out->begin() + static_cast<std::ptrdiff_t>(from), out->end(), same_key), out->end());
  }

  OperationCounters counters() const override { return {failures_, kcas_.helped()}; }

  // A counter word may hold a running operation's reference: finish it, then read.
  std::int64_t item_count(Region& region) override {
    return counted_items(region, [&](const std::atomic<std::uint64_t>& w) {
      return kcas_.read(region.offset_of(&w));
    });
  }

  // Nothing can be excluded: finishes every published operation (a dead process's
  // included), then runs fn. `check` on a table that live processes are writing to may
  // therefore report changes made while it ran.
  std::uint64_t with_exclusive_access(const std::function<void()>& fn) override {
    kcas_.help_all();
    finish_all_pending_shifts();
    fn();
    return 0;
  }

 private:
  struct Found {
    bool present;
    std::uint64_t slot;  // where the key is, or where it would go
    std::uint64_t dist;
    std::uint64_t record_bytes;  // of the key's record, when present
    const std::byte* record;     // the key's record, when present (bounds-checked; read it atomically)
    layout::RecordHeader header;
  };
  struct Torn {};  // the snapshot was overtaken by a write or a growth: start again
  // An insert found no room: no free slot within reach (long_shift false), or one only
  // further away than one KCAS step shifts (long_shift true: pending shifts could still
  // place the key, but a larger array places it without them).
  struct NoRoom {
    bool long_shift;
  };

  // Words one KCAS step of a shift moves. With the slot that ends the shift, a version per
  // bucket from the key's home (at most kMaxDist before it) to the slot after the shift,
  // and the item counter, a step fits one descriptor.
  static constexpr std::uint64_t kMaxShiftSlots = 1280;
  static_assert(kMaxShiftSlots + 1 + (layout::kMaxDist + kMaxShiftSlots + 2) / layout::kSlotsPerBucket + 2 + 1 <=
                    layout::kMaxKcasWords,
                "a shift step's slots, bucket versions and counter fit one KCAS");

  // Home groups of an old array <-> home slots of the next one (exact doubling, growth.hpp).
  static constexpr std::uint64_t kNewSlotsPerGroup = 2 * layout::kSlotsPerBucket;
  static std::uint64_t group_end_in_old(const layout::SlotArray& old, std::uint64_t group) noexcept {
    return std::min((group + 1) * layout::kSlotsPerBucket, old.home_slots());
  }
  static std::uint64_t group_end_in_new(const layout::SlotArray& current, std::uint64_t group) noexcept {
    return std::min((group + 1) * kNewSlotsPerGroup, current.home_slots());
  }

  Target target(const layout::SlotArray& slots, const growth::ArrayView& view) const {
    return {slots, ctx_.region().offset_of(slots.buckets()), &view};
  }

  // optimistic_read.hpp's Window over versions: entering a bucket never fails (an
  // operation in its control word is finished first); slot words are read likewise.
  // Validation also re-reads the growth word: a read of an array punched out after a
  // migration (growth.hpp) must never validate, even on versions noted as its zeros.
  class ReadWindow {
   public:
    ReadWindow(LockFreeEngine& e, const Target& t) : e_(e), t_(t) {}
    bool enter(std::uint64_t slot) {
      const std::uint64_t bucket = layout::SlotArray::bucket_of_slot(slot);
      if (!noted_.covers(bucket)) noted_.note(bucket, e_.kcas_.read(t_.control_offset(bucket)));
      return true;
    }
    std::uint64_t load(std::uint64_t slot) { return e_.kcas_.read(t_.slot_offset(slot)); }
    bool still_valid() const { return noted_.unchanged(t_.slots) && e_.ctx_.arrays().unchanged(*t_.view); }
    std::uint32_t busy_owner() const { return 0; }
    std::uint64_t version(std::uint64_t bucket) const { return noted_.noted(bucket); }
    bool covers(std::uint64_t bucket) const { return noted_.covers(bucket); }
    bool moved(std::uint64_t bucket) const { return layout::is_moved(noted_.noted(bucket)); }

   private:
    LockFreeEngine& e_;
    const Target t_;
    optimistic::NotedVersions noted_;
  };

  // A writer's snapshot of one array: a ReadWindow that also remembers every slot word it
  // read, from the first slot it was asked for upwards. A version it notes is never 0:
  // that is a punched array (see zero_version), and a KCAS must never expect its zeros.
  class Snapshot {
   public:
    Snapshot(LockFreeEngine& e, const Target& t) : e_(e), target_(t), window_(e, t) {}
    std::uint64_t word(std::uint64_t slot) {
      if (count_ == 0) first_ = slot;
      if (slot < first_) throw Torn{};  // never happens: probes only move up
      while (first_ + count_ <= slot) {
        const std::uint64_t s = first_ + count_;
        const std::uint64_t bucket = layout::SlotArray::bucket_of_slot(s);
        const bool entering = !window_.covers(bucket);
        window_.enter(s);
        if (entering && (window_.version(bucket) & lockfree::kValueMask) == 0) e_.zero_version(target_, bucket, window_.version(bucket));
        const std::uint64_t w = window_.load(s);
        if (count_ < kInline) {
          inline_[count_] = w;
        } else {
          spilled_.push_back(w);
        }
        ++count_;
      }
      const std::uint64_t i = slot - first_;
      return i < kInline ? inline_[i] : spilled_[i - kInline];
    }
    std::uint64_t version(std::uint64_t bucket) const { return window_.version(bucket); }
    bool still_valid() const { return window_.still_valid(); }
    const Target& target() const { return target_; }
    const layout::SlotArray& slots() const { return target_.slots; }

   private:
    static constexpr std::size_t kInline = 32;  // most probes and shifts: no allocation
    LockFreeEngine& e_;
    const Target target_;
    ReadWindow window_;
    std::uint64_t first_ = 0;
    std::size_t count_ = 0;
    std::array<std::uint64_t, kInline> inline_;
    std::vector<std::uint64_t> spilled_;
  };

  // A control word whose version reads 0. Live arrays of this engine never hold one
  // (versions start at 1 and skip 0 when they wrap): it is a punched array (reads as
  // zeros), or generation 0 of a file an older build set up with zeros and still uses
  // (a cold start gives every word version 1). Only there, while the view still names a
  // table that never grew, the word gets version 1 in place, MOVED kept. (A write into
  // a punched array would be a write lost: the guard leaves a window only as wide as a
  // whole growth finishing between its check and its CAS, and only on such old files.)
  // Either way the attempt starts again.
  // Any other 0 in an array the view still names (so not punched) is damage: kCorrupt,
  // never an endless retry.
  [[noreturn]] void zero_version(const Target& t, std::uint64_t bucket, std::uint64_t noted) {
    if (ctx_.arrays().unchanged(*t.view)) {
      if (t.view->generation != 0 || t.view->migrating) {
        corrupt("bucket " + std::to_string(bucket) + " of a lock-free slot array has version 0");
      }
      t.slots.bucket(bucket).control.compare_exchange_strong(noted, noted | 1, std::memory_order_acq_rel,
                                                             std::memory_order_relaxed);
    }
    throw Torn{};
  }

  // Runs attempt(snapshot of the current array) until it returns an answer (nullopt, or a
  // Torn throw: overtaken by a write or a growth; start again). During a migration the
  // key's home group is moved first (MigrationSteps::help). No room for the key: the table
  // grows (make_room) and the attempt runs again on the larger array.
  template <class Attempt>
  bool until_done(const HashedKey& key, const NewRecord* fresh, Attempt&& attempt) {
    long_shifts_ok_ = false;
    for (;;) {
      const growth::ArrayView view = ctx_.view();
      try {
        if (view.migrating) {
          migration_.help(view, key.hash, [&](std::uint64_t group) { move_group(view, group); },
                          [&] { finish_migration(view); });
        }
        Snapshot snap(*this, target(view.current, view));
        if (const std::optional<bool> answer = attempt(snap)) {
          if (migration_.load_check_due()) migration_.grow_if_loaded(view, item_count(ctx_.region()));
          return *answer;
        }
      } catch (const Torn&) {
      } catch (const NoRoom& no_room) {
        make_room(view, no_room, fresh);
      }
    }
  }

  // A larger array, or the migration under way finished first. When the table cannot
  // grow, an insert that only needed a long shift makes it in pending-shift steps; one
  // that found no free slot at all fails (kTableFull naming max_bytes, or kNoSpace), its
  // record freed.
  void make_room(const growth::ArrayView& view, NoRoom no_room, const NewRecord* fresh) {
    try {
      migration_.grow(view, [&] { finish_migration(view); });
    } catch (const Error& e) {
      if (no_room.long_shift && (e.code() == ErrorCode::kTableFull || e.code() == ErrorCode::kNoSpace)) {
        long_shifts_ok_ = true;
        return;
      }
      if (fresh != nullptr) ctx_.arena().free(fresh->offset, fresh->bytes);
      throw;
    }
  }

  ValueLength lookup(const HashedKey& key, std::span<char> out, std::string* out_string) {
    for (;;) {
      const growth::ArrayView view = ctx_.view();
      if (view.migrating) {
        // The old array first: its home bucket says (MOVED) whether the group is there.
        const Target old = target(view.old, view);
        ReadWindow window(*this, old);
        const optimistic::Attempt attempt = optimistic::try_lookup(ctx_, old.slots, window, key, out, out_string);
        if (attempt.outcome == optimistic::Outcome::kValid) return attempt.value;
        if (attempt.outcome != optimistic::Outcome::kMoved) continue;
      }
      const Target current = target(view.current, view);
      ReadWindow window(*this, current);
      const optimistic::Attempt attempt = optimistic::try_lookup(ctx_, current.slots, window, key, out, out_string);
      if (attempt.outcome == optimistic::Outcome::kValid) return attempt.value;
      // kMoved here: a later growth moved the group on, and the growth word moved before
      // it did. If it has not, nothing but a damaged word says MOVED: never an endless retry.
      if (attempt.outcome == optimistic::Outcome::kMoved && ctx_.arrays().unchanged(view)) moved_in_current();
    }
  }

  // The key's slot, or where it would be inserted: robin_hood::probe over the snapshot.
  // The key's home bucket must not be MOVED: then this array holds its group (the
  // writer's KCAS expects that version, so it still does when the write takes effect).
  Found probe(Snapshot& snap, const HashedKey& key) {
    const std::byte* record = nullptr;
    layout::RecordHeader header{};
    const layout::SlotArray& slots = snap.slots();
    const std::uint64_t home = slots.home_of(key.hash);
    snap.word(home);  // notes the home bucket's version
    if (layout::is_moved(snap.version(layout::SlotArray::bucket_of_slot(home)))) {
      // Only a growth begun after our view moves groups out of the current array.
      if (ctx_.arrays().unchanged(*snap.target().view)) moved_in_current();
      throw Torn{};
    }
    const robin_hood::Probe p = robin_hood::probe(
        slots, home, layout::SlotArray::tag_of_hash(key.hash),
        [&](std::uint64_t word) {
          record = ctx_.checked_record(word, &header);
          if (record == nullptr) {
            if (snap.still_valid()) throw_invalid_record(ctx_, word);
            throw Torn{};
          }
          return header.key_bytes == key.bytes.size() && record_bytes_equal(record, sizeof(layout::RecordHeader), key.bytes);
        },
        robin_hood::NoTouch{}, [&](std::uint64_t s) { return snap.word(s); });
    if (!p.found) return {false, p.slot, p.dist, 0, nullptr, {}};
    // The key's word is doubled (a pending shift): a write to the first copy would leave
    // the second naming the old record. Complete the shift first, then start again.
    if (is_pending_at(snap, p.slot)) {
      finish_pending_shift(snap.target(), pending_at(snap, p.slot));
      throw Torn{};
    }
    return {true, p.slot, p.dist, record_bytes_for(header.key_bytes, header.value_bytes), record, header};
  }

  [[noreturn]] void moved_in_current() const { corrupt("a home bucket of the current slot array is marked MOVED"); }

  [[noreturn]] void corrupt(const std::string& why) const {
    throw Error(ErrorCode::kCorrupt, ctx_.region().path() + ": corrupt table: " + why + "; run `shmht check`");
  }

  // The value of the key's record, read with atomic loads: only as good as the snapshot
  // (the caller validates it, or runs a KCAS that expects the snapshot's versions).
  std::string value_of(const Found& found) const {
    std::string value(found.header.value_bytes, '\0');
    load_record_bytes(found.record, sizeof(layout::RecordHeader) + found.header.key_bytes, value.data(), value.size());
    return value;
  }
  bool value_equals(const Found& found, std::string_view expected) const {
    return found.header.value_bytes == expected.size() &&
           record_bytes_equal(found.record, sizeof(layout::RecordHeader) + found.header.key_bytes, expected);
  }

  // Re-points the key's slot at `fresh`: a KCAS of that slot and the versions of the
  // buckets from the key's home to it. The home bucket's is what proves this array still
  // holds the key's group when the write takes effect (a group move bumps it and sets
  // MOVED, and leaves the other buckets' versions as they were).
  // Frees the record it replaced; false if the snapshot was overtaken.
  bool overwrite(Snapshot& snap, const Found& found, const NewRecord& fresh) {
    const std::uint64_t old_word = snap.word(found.slot);
    std::vector<WordChange>& changes = fresh_changes();
    for_each_bucket(snap, found.slot - found.dist, found.slot, &changes, [&](std::uint64_t s) -> std::optional<std::uint64_t> {
      if (s != found.slot) return std::nullopt;
      return Slot::encode(Slot::tag_of(old_word), Slot::dist_of(old_word), fresh.offset);
    }, found.slot);
    if (!run(changes)) return false;
    ctx_.arena().free(Slot::offset_of(old_word), found.record_bytes);
    return true;
  }

  // Erases the key: the KCAS that unlinks it also moves back the run after it (up to an
  // empty slot or a key at home), or its first kMaxShiftSlots slots when the run is longer,
  // leaving a pending shift that finish_pending_shift() then completes step by step.
  // Frees its record; false if the snapshot was overtaken.
  bool unlink(Snapshot& snap, const Found& found) {
    std::vector<WordChange>& changes = fresh_changes();
    changes.push_back(count(&layout::KcasDescriptor::items_removed));
    // Decided from the key's home: its bucket's version says the group is this array's.
    const std::optional<std::uint64_t> kept = plan_back_shift(snap, found.slot - found.dist, found.slot, &changes, found.slot);
    const std::optional<PendingShift> pending = kept ? std::optional(pending_at(snap, *kept)) : std::nullopt;
    if (!run(changes)) return false;
    ctx_.arena().free(Slot::offset_of(snap.word(found.slot)), found.record_bytes);
    if (pending) finish_pending_shift(snap.target(), *pending);
    return true;
  }

  // Appends the words of one backward shift at `from` (the slot whose word goes): each
  // following word of the run moves back one slot, dist - 1, and the run's last slot
  // becomes empty. A run longer than one KCAS holds moves only its first kMaxShiftSlots
  // words; the word after them then stays where it was and is also copied into the slot
  // before (a pending shift): returns that slot, the one whose word is left in place.
  // `decided_from`: the first slot read to decide on this shift (from, or the first copy
  // of the pending shift it completes); the KCAS expects its bucket's version too, so a
  // decision on words that have moved since can never be applied. `unlinking`: `from`
  // when its word's record is the one this operation unlinks (an erase; not a step of a
  // pending shift, whose word lives on in the other copy): see for_each_bucket.
  std::optional<std::uint64_t> plan_back_shift(Snapshot& snap, std::uint64_t decided_from, std::uint64_t from,
                                               std::vector<WordChange>* changes, std::uint64_t unlinking = kUnlinksNone) {
    const std::uint64_t last = robin_hood::erase_run_end(snap.slots(), from, robin_hood::NoTouch{},
                                                         [&](std::uint64_t s) { return snap.word(s); });
    const bool whole = last - from <= kMaxShiftSlots;
    std::uint64_t kept = whole ? last : from + kMaxShiftSlots;
    // A cut at a word already doubled (another shift's pending copy) would leave it in
    // three slots, which nothing completes: cut before that pair instead.
    while (!whole && kept > from + 1 && in_pending_shift(snap, kept)) --kept;
    if (!whole && in_pending_shift(snap, kept)) throw_no_cut(from);
    // Whole: the slot after the run was read to decide where it ends; partial: the slots
    // around the kept word were (the cut). Their buckets' versions are expected too.
    const std::uint64_t covered = std::min((whole ? last : kept) + 1, snap.slots().probe_limit() - 1);
    for_each_bucket(snap, decided_from, covered, changes, [&](std::uint64_t s) -> std::optional<std::uint64_t> {
      if (s < from || s > kept || (s == kept && !whole)) return std::nullopt;
      if (s == last) return layout::kEmptySlot;
      const std::uint64_t next = snap.word(s + 1);
      return Slot::with_dist(next, Slot::dist_of(next) - 1);
    }, unlinking);
    return whole ? std::nullopt : std::optional(kept);
  }

  // A pending shift, named by the record its doubled word points at and that word's home
  // slot: enough to find it again after other writes moved it.
  struct PendingShift {
    std::uint64_t record;
    std::uint64_t home;
  };
  PendingShift pending_at(Snapshot& snap, std::uint64_t slot) {
    const std::uint64_t word = snap.word(slot);
    return {Slot::offset_of(word), slot - Slot::dist_of(word)};
  }
  // The first of two adjacent slots holding the same word (the second with dist + 1):
  // a pending shift, the state between two KCAS steps of one long shift.
  bool is_pending_at(Snapshot& snap, std::uint64_t slot) {
    if (slot + 1 >= snap.slots().probe_limit()) return false;
    const std::uint64_t here = snap.word(slot);
    const std::uint64_t next = snap.word(slot + 1);
    return is_doubled(here, next);
  }
  // Slot s holds either copy of a doubled word.
  bool in_pending_shift(Snapshot& snap, std::uint64_t s) {
    return is_pending_at(snap, s) || (s > 0 && is_pending_at(snap, s - 1));
  }
  // Every slot a step could cut at holds a copy of a doubled word: more pending shifts
  // side by side than one step spans. Unreachable short of that many interrupted shifts
  // in one run; reported rather than letting a word into three slots.
  [[noreturn]] void throw_no_cut(std::uint64_t from) const {
    throw Error(ErrorCode::kInvalidArgument,
                ctx_.region().path() + ": internal error: the " + std::to_string(kMaxShiftSlots) + " slots after slot " +
                    std::to_string(from) + " are all pending shifts, so a long shift there cannot be cut into steps; "
                    "reopen the table once no other process has it open (cold start completes them)");
  }
  static bool is_doubled(std::uint64_t here, std::uint64_t next) {
    return here != layout::kEmptySlot && next != layout::kEmptySlot && Slot::offset_of(here) == Slot::offset_of(next) &&
           Slot::dist_of(next) == Slot::dist_of(here) + 1;
  }

  // Completes a pending shift: backward shifts at its second copy, one KCAS step at a time
  // (each may leave the next pending shift further on). Ends when the pending shift is
  // gone, whoever completed it (another writer may, or may consume it: link_new treats a
  // doubled word as a free slot). Lock-free: a step fails only because another write
  // succeeded. In an array a growth left behind it gives up (a pending shift is a valid
  // state): that array may have been punched out, and reads as zeros.
  void finish_pending_shift(const Target& t, PendingShift pending) {
    for (;;) {
      try {
        Snapshot snap(*this, t);
        const std::optional<std::uint64_t> first = find_pending(snap, pending);
        if (!first) {
          if (snap.still_valid()) return;
          continue;
        }
        std::vector<WordChange>& changes = fresh_changes();
        const std::optional<std::uint64_t> kept = plan_back_shift(snap, *first, *first + 1, &changes);
        const std::optional<PendingShift> next = kept ? std::optional(pending_at(snap, *kept)) : std::nullopt;
        if (!run(changes)) continue;
        if (!next) return;
        pending = *next;
      } catch (const Torn&) {
        if (!ctx_.arrays().unchanged(*t.view)) return;
      }
    }
  }
  // Where `pending`'s first copy is now: within kMaxDist of its home, like any word.
  std::optional<std::uint64_t> find_pending(Snapshot& snap, const PendingShift& pending) {
    const std::uint64_t end = std::min(pending.home + layout::kMaxDist + 1, snap.slots().probe_limit() - 1);
    for (std::uint64_t s = pending.home; s < end; ++s) {
      const std::uint64_t word = snap.word(s);
      if (word != layout::kEmptySlot && Slot::offset_of(word) == pending.record) {
        return is_pending_at(snap, s) ? std::optional(s) : std::nullopt;
      }
    }
    return std::nullopt;
  }
  // Every pending shift in the table, completed (check would report a doubled word). On
  // a corrupt table it stops: check's own scan then names what is wrong.
  // Every live array's (the old one's too during a migration: check reads its unmoved groups).
  void finish_all_pending_shifts() {
    try {
      const growth::ArrayView view = ctx_.view();
      for (const layout::SlotArray* slots : {&view.current, &view.old}) {
        if (!slots->valid()) continue;
        const Target t = target(*slots, view);
        for (std::uint64_t s = 0; s + 1 < slots->probe_limit(); ++s) {
          // A migration that ends meanwhile punches the old array: stop reading it (every
          // read of a punched page would allocate it again). Checked once a page of slots.
          if (s % 512 == 0 && !ctx_.arrays().unchanged(view)) return;
          // Until slot s holds no doubled word (a completed shift may bring another pair
          // here), at most a run's length of times: a step always moves some word.
          for (std::uint64_t tries = 0; tries <= layout::kMaxDist + kMaxShiftSlots; ++tries) {
            const std::uint64_t here = kcas_.read(t.slot_offset(s));
            const std::uint64_t next = kcas_.read(t.slot_offset(s + 1));
            if (!is_doubled(here, next) || Slot::dist_of(here) > s) break;
            finish_pending_shift(t, {Slot::offset_of(here), s - Slot::dist_of(here)});
          }
        }
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCorrupt) throw;
    }
  }

  // Links `fresh` where `found` says the key would go: the right shift of the words from
  // there to the first free slot (empty, or the first copy of a pending shift, whose word
  // is also in the next slot), one KCAS when it fits, with the key's word and the item
  // counter. A longer shift first moves its last kMaxShiftSlots words, one KCAS each,
  // leaving a pending shift nearer the key each time; only the last step links the key.
  // False if the snapshot was overtaken or a step was taken (the caller starts again).
  // No free slot, or (while the table can grow) only a long shift away: throws NoRoom, and
  // the caller grows the table rather than start pending shifts near capacity.
  bool link_new(Snapshot& snap, const HashedKey& key, const Found& found, const NewRecord& fresh) {
    const std::optional<std::uint64_t> free = free_slot_for_shift(snap, found.slot, found.dist);
    if (!free) {
      if (!snap.still_valid()) return false;
      throw NoRoom{false};
    }
    const std::uint64_t last = *free;
    // A doubled word's first copy was taken for free because of the next slot: expect
    // that slot's bucket version too.
    const std::uint64_t covered = snap.word(last) == layout::kEmptySlot ? last : last + 1;
    std::vector<WordChange>& changes = fresh_changes();
    if (last - found.slot > kMaxShiftSlots) {
      if (!long_shifts_ok_) {
        if (!snap.still_valid()) return false;
        throw NoRoom{true};
      }
      std::uint64_t from = last - kMaxShiftSlots;  // its word is doubled: the new pending shift
      // Not at a word already doubled (it would be in three slots): cut after that pair.
      while (from + 1 < last && in_pending_shift(snap, from)) ++from;
      if (in_pending_shift(snap, from)) throw_no_cut(from);
      for_each_bucket(snap, from, covered, &changes, [&](std::uint64_t s) { return shifted_right(snap, s, from, last); });
      run(changes);
      return false;
    }
    const std::uint64_t home = snap.slots().home_of(key.hash);
    const std::uint64_t new_word = Slot::encode(layout::SlotArray::tag_of_hash(key.hash), found.dist, fresh.offset);
    changes.push_back(count(&layout::KcasDescriptor::items_added));
    // From the home slot: the key's probe read those slots to decide it is absent.
    for_each_bucket(snap, home, covered, &changes, [&](std::uint64_t s) -> std::optional<std::uint64_t> {
      if (s == found.slot) return new_word;
      return shifted_right(snap, s, found.slot, last);
    });
    if (!run(changes)) return false;
    migration_.count_insert();
    return true;
  }
  // The word slot s gets in a right shift of the words [from, last) into (from, last]: its
  // left neighbour's, dist + 1; other slots keep theirs.
  std::optional<std::uint64_t> shifted_right(Snapshot& snap, std::uint64_t s, std::uint64_t from, std::uint64_t last) {
    if (s <= from || s > last) return std::nullopt;
    const std::uint64_t moved = snap.word(s - 1);
    return Slot::with_dist(moved, Slot::dist_of(moved) + 1);
  }
  // robin_hood::plan_insert's scan, where the first copy of a pending shift also ends the
  // run: its word lives on in the next slot, so the shift may overwrite it. nullopt: some
  // word would pass kMaxDist or the array's end (the table is full).
  std::optional<std::uint64_t> free_slot_for_shift(Snapshot& snap, std::uint64_t pos, std::uint64_t dist) {
    if (dist > layout::kMaxDist) return std::nullopt;
    for (std::uint64_t s = pos; s < snap.slots().probe_limit(); ++s) {
      const std::uint64_t word = snap.word(s);
      if (word == layout::kEmptySlot || is_pending_at(snap, s)) return s;
      if (Slot::dist_of(word) >= layout::kMaxDist) break;
    }
    return std::nullopt;
  }

  // Appends, in address order, a version bump for every bucket of slots [from, to] and
  // the new value desired(s) of each slot s for which it is set. `unlinking`: the slot
  // whose word names the record this operation unlinks (an overwrite's or an erase's key),
  // if in range. Versions and that slot may be installed directly by the owner (one CAS,
  // no RDCSS: kcas.hpp, THE OWNER'S DIRECT INSTALLS): a version only grows, and the
  // record is freed only after the KCAS returns, so no slot can name it again before.
  // Every other slot changed here holds a word that moves on (and may come back) or an
  // empty: conditional installs.
  static constexpr std::uint64_t kUnlinksNone = ~std::uint64_t{0};
  template <class Desired>
  void for_each_bucket(Snapshot& snap, std::uint64_t from, std::uint64_t to, std::vector<WordChange>* changes,
                       Desired&& desired, std::uint64_t unlinking = kUnlinksNone) {
    std::uint64_t bucket = ~std::uint64_t{0};
    for (std::uint64_t s = from; s <= to; ++s) {
      if (layout::SlotArray::bucket_of_slot(s) != bucket) {
        bucket = layout::SlotArray::bucket_of_slot(s);
        snap.word(s);  // the bucket's version is noted when its first slot is read
        changes->push_back({snap.target().control_offset(bucket), snap.version(bucket), bumped(snap.version(bucket)),
                            lockfree::Install::kDirect});
      }
      if (const std::optional<std::uint64_t> value = desired(s)) {
        changes->push_back({snap.target().slot_offset(s), snap.word(s), *value,
                            s == unlinking ? lockfree::Install::kDirect : lockfree::Install::kConditional});
      }
    }
  }


  // +1 on one of this attachment's item counters (only its owner starts such a change).
  // Read through the KCAS all the same: a helper that copied one of our finished
  // operations may still install into the counter, briefly, and that reference must not be
  // taken for the counter's value (the KCAS would then expect it, and could succeed).
  WordChange count(std::atomic<std::uint64_t> layout::KcasDescriptor::*counter) {
    const std::uint64_t offset = ctx_.region().offset_of(&(kcas_.descriptor(ctx_.entry_index()).*counter));
    const std::uint64_t value = kcas_.read(offset);
    return {offset, value, (value + 1) & lockfree::kValueMask, lockfree::Install::kDirect};  // only grows
  }

  // The one buffer writes build their changes in (no allocation per operation).
  std::vector<WordChange>& fresh_changes() {
    changes_.clear();
    return changes_;
  }

  bool run(std::span<const WordChange> changes) {
    const bool done = kcas_.run(changes);
    if (!done) ++failures_;
    return done;
  }

  // ---- growth (see GROWTH above) -------------------------------------------------------

  // Every group not moved yet (a stopped or killed claimant's), then the migration is over.
  void finish_migration(const growth::ArrayView& view) {
    const Target old = target(view.old, view);
    for (std::uint64_t group = 0; group < view.old.group_count(); ++group) {
      if (!layout::is_moved(kcas_.read(old.control_offset(group)))) move_group(view, group);
      if (!ctx_.arrays().unchanged(view)) return;  // someone else finished it
    }
    detail::fault_point(testing::FaultPoint::kMigrationFinishing);
    // Nothing to hold here (nothing excludes): check's with_exclusive_access may see the
    // migration end under it, and the old array punched (README: run check when writers are quiet).
    if (growth::mark_finished(ctx_.region(), view)) growth::reclaim(ctx_.region(), ctx_.arrays(), view);
  }

  // Moves one home group of view.old into view.current: ONE KCAS over the old home
  // bucket's version (-> bumped | MOVED), the versions of the other old buckets read to
  // collect the group's keys (compared, kept), and in the new array every slot the
  // insertion of those keys changes with a bumped version for every bucket read to plan
  // it. Returns once the group is MOVED (by us or anyone) or the view went stale (then
  // the migration is over and every group has moved). A failed KCAS means some other
  // write succeeded: plan again from fresh snapshots.
  void move_group(const growth::ArrayView& view, std::uint64_t group) {
    const Target old = target(view.old, view);
    const Target current = target(view.current, view);
    const std::uint64_t begin = group * layout::kSlotsPerBucket;
    for (;;) {
      if (!ctx_.arrays().unchanged(view)) return;
      try {
        Snapshot from(*this, old);
        from.word(begin);  // notes the home bucket's version
        if (layout::is_moved(from.version(group))) return;
        moving_.clear();
        std::uint64_t last_read = begin;
        robin_hood::visit_home_range(
            view.old, begin, group_end_in_old(view.old, group),
            [&](std::uint64_t, std::uint64_t word) {
              // A pending shift's second copy (same record, next slot): one key, moved once.
              if (moving_.empty() || Slot::offset_of(moving_.back()) != Slot::offset_of(word)) moving_.push_back(word);
            },
            [&](std::uint64_t s) { last_read = s; }, [&](std::uint64_t s) { return from.word(s); });
        // Each key's new home needs its hash, so its record: request them all at once.
        for (const std::uint64_t word : moving_) ctx_.prefetch_record(word, 16);
        std::vector<WordChange>& changes = fresh_changes();
        for (std::uint64_t b = group; b <= layout::SlotArray::bucket_of_slot(last_read); ++b) {
          const std::uint64_t version = from.version(b);
          // Versions (the home's only grows and gains MOVED; the others are compared and
          // kept): the owner installs them directly (kcas.hpp, THE OWNER'S DIRECT INSTALLS).
          changes.push_back({old.control_offset(b), version, b == group ? bumped(version) | layout::kMovedBit : version,
                             lockfree::Install::kDirect});
        }
        plan_group_move(from, current, group, &changes);
        // Old arrays lie below newer ones (each is claimed at the arena's end), but sort
        // anyway: the KCAS installs in address order.
        std::sort(changes.begin(), changes.end(), [](const WordChange& a, const WordChange& b) { return a.offset < b.offset; });
        if (changes.size() > layout::kMaxKcasWords) {
          corrupt("moving home group " + std::to_string(group) + " into the larger slot array would change " +
                  std::to_string(changes.size()) + " words at once, more than one lock-free operation holds (" +
                  std::to_string(layout::kMaxKcasWords) + ")");
        }
        // Planned, nothing applied: the lock engines' "partly copied" moment. Here a
        // mover that dies or stops now has published nothing (its KCAS is all or nothing).
        detail::fault_point(testing::FaultPoint::kGroupMoveMidway);
        if (run(changes)) {
          detail::fault_point(testing::FaultPoint::kGroupMoved);
          return;
        }
      } catch (const Torn&) {
      }
    }
  }

  // The new array's side of a group move, planned on a private copy: the current array's
  // slots from the group's first new home (14 * group) up to the first empty slot after
  // where the inserts end, with the group's keys inserted Robin Hood style (nobody else
  // puts a key of an unmoved group there, so none is there yet), then diffed against the
  // snapshot the copy came from. Keys of earlier groups displaced into the range sit
  // further from their homes than any of ours at the same slot, so the probes pass them,
  // as they would in the array.
  void plan_group_move(Snapshot& from, const Target& current, std::uint64_t group, std::vector<WordChange>* changes) {
    Snapshot to(*this, current);
    const layout::SlotArray& slots = current.slots;
    const std::uint64_t base = group * kNewSlotsPerGroup;
    const std::uint64_t limit = slots.probe_limit();
    planned_.clear();
    const auto at = [&](std::uint64_t s) -> std::uint64_t& {  // s >= base; extends the copy
      while (planned_.size() <= s - base) planned_.push_back(to.word(base + planned_.size()));
      return planned_[s - base];
    };
    for (const std::uint64_t word : moving_) {
      const std::uint64_t home = slots.home_of(hash_of_record(from, word));
      if (home < base || home >= group_end_in_new(slots, group)) {
        if (from.still_valid()) corrupt("a key of home group " + std::to_string(group) + " hashes outside it");
        throw Torn{};
      }
      std::uint64_t pos = home, dist = 0;
      for (;; ++pos, ++dist) {
        if (pos >= limit || dist > layout::kMaxDist) no_room_to_move(from, to, group);
        const std::uint64_t w = at(pos);
        if (w == layout::kEmptySlot || Slot::dist_of(w) < dist) break;
      }
      std::uint64_t last = pos;
      for (;; ++last) {
        if (last >= limit) no_room_to_move(from, to, group);
        const std::uint64_t w = at(last);
        if (w == layout::kEmptySlot) break;
        if (Slot::dist_of(w) >= layout::kMaxDist) no_room_to_move(from, to, group);
      }
      for (std::uint64_t s = last; s > pos; --s) {
        const std::uint64_t w = at(s - 1);
        at(s) = Slot::with_dist(w, Slot::dist_of(w) + 1);
      }
      at(pos) = Slot::encode(Slot::tag_of(word), dist, Slot::offset_of(word));
    }
    std::uint64_t bucket = ~std::uint64_t{0};
    for (std::uint64_t i = 0; i < planned_.size(); ++i) {
      const std::uint64_t s = base + i;
      if (layout::SlotArray::bucket_of_slot(s) != bucket) {
        bucket = layout::SlotArray::bucket_of_slot(s);
        changes->push_back({current.control_offset(bucket), to.version(bucket), bumped(to.version(bucket)), lockfree::Install::kDirect});
      }
      const std::uint64_t was = to.word(s);
      if (planned_[i] != was) changes->push_back({current.slot_offset(s), was, planned_[i]});
    }
  }

  // The hash of the key a slot word's record holds, read with atomic loads: only as good
  // as the snapshot (the move's KCAS expects its versions; a record is freed and reused
  // only after a KCAS that bumped one of them).
  std::uint64_t hash_of_record(Snapshot& from, std::uint64_t word) {
    layout::RecordHeader header{};
    const std::byte* record = ctx_.checked_record(word, &header);
    if (record == nullptr) {
      if (from.still_valid()) throw_invalid_record(ctx_, word);
      throw Torn{};
    }
    key_.resize(header.key_bytes);
    load_record_bytes(record, sizeof(layout::RecordHeader), key_.data(), key_.size());
    return hash_key(key_, ctx_.fixed().hash_seed);
  }

  [[noreturn]] void no_room_to_move(Snapshot& from, Snapshot& to, std::uint64_t group) {
    if (!from.still_valid() || !to.still_valid()) throw Torn{};
    corrupt("home group " + std::to_string(group) + " does not fit into the larger slot array");
  }

  NewRecord write_record(const HashedKey& key, std::string_view value) { return ctx_.write_new_record(key, value); }

  TableContext& ctx_;
  lockfree::Kcas kcas_;
  std::vector<WordChange> changes_;
  std::vector<std::uint64_t> moving_;  // a group's old slot words while it moves (reused)
  std::vector<std::uint64_t> planned_;  // the new array's slots from a group's first home, as the move leaves them
  std::string key_;                     // a moving record's key (reused)
  MigrationSteps migration_{ctx_, lockfree::kInitialVersion};
  bool long_shifts_ok_ = false;  // this write may make a long shift in pending steps: the table cannot grow
  std::uint64_t failures_ = 0;
};

}  // namespace

std::unique_ptr<EngineBase> make_lockfree_engine(TableContext& context) {
  return std::make_unique<LockFreeEngine>(context);
}

}  // namespace shmht
