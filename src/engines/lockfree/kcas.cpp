#include "engines/lockfree/kcas.hpp"

#include <algorithm>
#include <cstddef>
#include <string>

#include "fault_injection.hpp"
#include "shmht/error.hpp"

namespace shmht::lockfree {

void KcasFaults::published() { detail::fault_point(testing::FaultPoint::kKcasPublished); }
void KcasFaults::mid_install() { detail::fault_point(testing::FaultPoint::kKcasMidInstall); }
void KcasFaults::decided() { detail::fault_point(testing::FaultPoint::kKcasDecided); }
void KcasFaults::mid_cleanup() { detail::fault_point(testing::FaultPoint::kKcasMidCleanup); }
void KcasFaults::mid_rdcss() { detail::fault_point(testing::FaultPoint::kKcasMidRdcss); }
void KcasFaults::owner_installing() { detail::fault_point(testing::FaultPoint::kKcasOwnerInstalling); }

namespace {

[[noreturn]] void corrupt(const Region& region, const std::string& why) {
  throw Error(ErrorCode::kCorrupt, region.path() + ": corrupt table: " + why + "; run `shmht check`");
}

}  // namespace

Kcas::Kcas(Region& region, std::uint32_t own_entry)
    : region_(region),
      own_(own_entry),
      slots_begin_(region.fixed().slot_array_offset),
      slots_end_(region.fixed().slot_array_offset + region.fixed().bucket_count * sizeof(layout::Bucket)),
      descriptors_(region.at<layout::KcasDescriptor>(region.fixed().engine_area_offset +
                                                     layout::descriptors_offset(region.fixed().max_processes))) {}

layout::KcasDescriptor& Kcas::descriptor(std::uint32_t e) const noexcept { return descriptors_[e]; }

bool Kcas::in_grown_array(std::uint64_t offset) const {
  for (const auto& [begin, end] : grown_) {
    if (offset >= begin && offset < end) return true;
  }
  // Arrays published since the last look: validated (an offset a peer wrote must not
  // widen what a descriptor may name) before their bounds are trusted.
  const std::uint32_t limit = growth::generation_limit(region_.fixed());
  bool found = false;
  try {
    for (auto g = static_cast<std::uint32_t>(grown_.size() + 1); g < limit; ++g) {
      if (region_.header().array_offsets[g].load(std::memory_order_acquire) == 0) break;
      if (!arrays_) arrays_.emplace(region_);
      const layout::SlotArray& array = arrays_->array(g);
      const std::uint64_t begin = region_.offset_of(array.buckets());
      grown_.emplace_back(begin, begin + array.bucket_count() * sizeof(layout::Bucket));
      found |= offset >= grown_.back().first && offset < grown_.back().second;
    }
  } catch (const Error&) {
    // Not a valid array (or no valid growth word): nothing there may be named.
  }
  return found;
}

// A word a KCAS may name: a word of a slot array (any generation's, validated), or an
// entry's item counter. Anything else in a descriptor was written by a hostile or broken peer.
void Kcas::check_offset(std::uint64_t offset) const {
  if (offset % 8 == 0 && offset >= slots_begin_ && offset < slots_end_) return;
  if (offset % 8 == 0 && in_grown_array(offset)) return;
  const std::uint64_t first = region_.fixed().engine_area_offset + layout::descriptors_offset(region_.fixed().max_processes);
  if (offset >= first) {
    const std::uint64_t within = (offset - first) % sizeof(layout::KcasDescriptor);
    const std::uint64_t entry = (offset - first) / sizeof(layout::KcasDescriptor);
    if (entry < region_.fixed().max_processes && (within == offsetof(layout::KcasDescriptor, items_added) ||
                                                  within == offsetof(layout::KcasDescriptor, items_removed))) {
      return;
    }
  }
  corrupt(region_, "a lock-free operation names the word at offset " + std::to_string(offset) +
                       ", which is neither a slot, a control word nor an item counter");
}

bool Kcas::copy_words(const layout::KcasDescriptor& d, std::uint64_t seq, std::vector<WordChange>* out) const {
  const std::uint64_t count = d.kcas_count.load(std::memory_order_relaxed);
  out->clear();
  for (std::uint64_t i = 0; i < count && i < layout::kMaxKcasWords; ++i) {
    const layout::KcasWord& w = d.words[i];
    out->push_back({w.offset.load(std::memory_order_relaxed), w.expected.load(std::memory_order_relaxed),
                    w.desired.load(std::memory_order_relaxed)});
  }
  // Pairs with the owner's release fence after kPreparing: if we read any field of a
  // later use, we see its new sequence here.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seq_of(d.kcas_state.load(std::memory_order_relaxed)) != seq) return false;
  if (count > layout::kMaxKcasWords) corrupt(region_, "a lock-free descriptor holds " + std::to_string(count) + " words");
  for (const WordChange& c : *out) check_offset(c.offset);
  return true;
}

bool Kcas::run(std::span<const WordChange> changes) {
  if (changes.size() > layout::kMaxKcasWords) {
    // The engine splits every shift into steps that fit (lockfree_robin_hood.cpp): a bug.
    throw Error(ErrorCode::kInvalidArgument, region_.path() + ": internal error: a lock-free operation would change " +
                                                 std::to_string(changes.size()) + " words at once (the limit is " +
                                                 std::to_string(layout::kMaxKcasWords) + "); please report it");
  }
  if (own_unfinished_) finish_entry(own_);  // throws (kCorrupt) rather than orphan its references
  layout::KcasDescriptor& d = descriptor(own_);
  const std::uint64_t seq = next_seq(seq_of(d.kcas_state.load(std::memory_order_relaxed)));
  own_unfinished_ = true;  // until help() returns: an exception leaves this use to finish
  // New sequence first: helpers still copying the previous use now fail their check.
  // Portable as written, no TSO assumed: the release fence orders this store before the
  // field stores below, and a helper reads the fields, then an acquire fence, then the
  // state (copy_words); if it read any new field, the fences synchronize and it sees this
  // sequence (or a later one), so it discards its copy. (A fence: free on x86-64.)
  d.kcas_state.store(state_of(seq, kPreparing), std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  d.kcas_count.store(changes.size(), std::memory_order_relaxed);
  for (std::size_t i = 0; i < changes.size(); ++i) {
    d.words[i].offset.store(changes[i].offset, std::memory_order_relaxed);
    d.words[i].expected.store(changes[i].expected, std::memory_order_relaxed);
    d.words[i].desired.store(changes[i].desired, std::memory_order_relaxed);
  }
  d.kcas_state.store(state_of(seq, kUndecided), std::memory_order_release);
  KcasFaults::published();
  const bool succeeded = help({own_, false, seq}, changes);
  own_unfinished_ = false;
  return succeeded;
}

bool Kcas::help(Ref kcas, std::span<const WordChange> own_changes) {
  const bool as_owner = !own_changes.empty();
  layout::KcasDescriptor& d = descriptor(kcas.entry);
  const std::uint64_t ref = encode_ref(kcas);
  // Helping is acyclic (address order), so honest descriptors nest less deep than there
  // are attachments; deeper means references that point at each other: a corrupt file.
  if (depth_ > region_.fixed().max_processes) corrupt(region_, "lock-free operations refer to each other in a cycle");
  if (depth_ == scratch_.size()) scratch_.emplace_back();
  std::vector<WordChange>& copied = scratch_[depth_];
  struct Depth {
    std::size_t& depth;
    explicit Depth(std::size_t& d) : depth(++d) {}
    ~Depth() { --depth; }
  } nested(depth_);
  if (!as_owner) ++helped_;

  const std::uint64_t state = d.kcas_state.load(std::memory_order_acquire);
  if (seq_of(state) != kcas.seq || status_of(state) == kPreparing) return false;  // over, or never published
  // The owner has its changes at hand; a helper copies them from the descriptor.
  if (!as_owner && !copy_words(d, kcas.seq, &copied)) return false;
  const std::span<const WordChange> changes = as_owner ? own_changes : std::span<const WordChange>(copied);

  if (status_of(state) == kUndecided) {
    Status decision = kSucceeded;
    for (std::size_t i = 0; i < changes.size() && decision == kSucceeded; ++i) {
      const bool direct = as_owner && (changes[i].install == Install::kDirect ||
                                       changes[i].expected == changes[i].desired || detail::flaw_direct_install_of_any_word());
      if (as_owner) KcasFaults::owner_installing();
      for (;;) {
        const std::uint64_t found = direct ? install_direct(kcas, changes[i].offset, changes[i].expected)
                                           : install(kcas, changes[i].offset, changes[i].expected);
        if (found == ref) break;  // another helper installed it
        if (is_ref(found)) {
          resolve(changes[i].offset, found);  // another operation is in the way: finish it
          continue;
        }
        if (found != changes[i].expected) decision = kFailed;
        break;
      }
      if (as_owner && i == 0) KcasFaults::mid_install();
    }
    std::uint64_t undecided = state_of(kcas.seq, kUndecided);
    d.kcas_state.compare_exchange_strong(undecided, state_of(kcas.seq, decision), std::memory_order_acq_rel,
                                         std::memory_order_acquire);
    if (as_owner) KcasFaults::decided();
  }
  const std::uint64_t decided = d.kcas_state.load(std::memory_order_acquire);
  if (seq_of(decided) != kcas.seq) return false;  // finished by others and reused
  const bool succeeded = status_of(decided) == kSucceeded;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    finalize(changes[i].offset, ref, succeeded ? changes[i].desired : changes[i].expected);
    if (as_owner && i == 0) KcasFaults::mid_cleanup();
  }
  return succeeded;
}

void Kcas::finalize(std::uint64_t offset, std::uint64_t ref, std::uint64_t final_value) {
  std::atomic<std::uint64_t>& w = word(offset);
  for (std::uint64_t value = w.load(std::memory_order_acquire);;) {
    if (value == ref) {
      if (w.compare_exchange_strong(value, final_value, std::memory_order_acq_rel, std::memory_order_acquire)) return;
    } else if (is_ref(value) && decode_ref(value).rdcss) {
      // A late install of this (decided) operation, or of another: complete it, which for
      // ours puts the expected value back, so no reference to us outlives this pass.
      resolve(offset, value);
      value = w.load(std::memory_order_acquire);
    } else {
      return;  // already final
    }
  }
}

std::uint64_t Kcas::install_direct(Ref kcas, std::uint64_t offset, std::uint64_t expected) {
  std::uint64_t found = expected;
  word(offset).compare_exchange_strong(found, encode_ref(kcas), std::memory_order_acq_rel, std::memory_order_acquire);
  return found;  // `expected` when it installed
}

std::uint64_t Kcas::install(Ref kcas, std::uint64_t offset, std::uint64_t expected) {
  layout::KcasDescriptor& mine = descriptor(own_);
  const std::uint64_t previous = mine.rdcss_state.load(std::memory_order_relaxed);
  // Still undecided: this entry's previous holder died with that install in a word (our
  // own installs complete before they return). Complete it before the descriptor moves on,
  // or the word keeps a reference nobody can complete. An heir installs as soon as it
  // helps anyone, which attaching does (help_all) before it reaches its own entry.
  if (status_of(previous) == kUndecided) [[unlikely]] complete_rdcss({own_, true, seq_of(previous)});
  const std::uint64_t seq = next_seq(seq_of(previous));
  mine.rdcss_state.store(state_of(seq, kPreparing), std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // as in run(): complete_rdcss's acquire fence pairs with it
  mine.rdcss_word.store(offset, std::memory_order_relaxed);
  mine.rdcss_expected.store(expected, std::memory_order_relaxed);
  mine.rdcss_kcas.store(encode_ref(kcas), std::memory_order_relaxed);
  mine.rdcss_state.store(state_of(seq, kUndecided), std::memory_order_release);
  const Ref rdcss{own_, true, seq};
  const std::uint64_t rdcss_ref = encode_ref(rdcss);
  std::atomic<std::uint64_t>& target = word(offset);
  for (;;) {
    std::uint64_t found = expected;
    if (target.compare_exchange_strong(found, rdcss_ref, std::memory_order_acq_rel, std::memory_order_acquire)) {
      KcasFaults::mid_rdcss();
      complete_rdcss(rdcss);
      mine.rdcss_state.store(state_of(seq, kSucceeded), std::memory_order_release);
      return expected;
    }
    if (is_ref(found) && decode_ref(found).rdcss) {
      resolve(offset, found);  // someone's install in progress: finish it
      continue;
    }
    mine.rdcss_state.store(state_of(seq, kSucceeded), std::memory_order_release);
    return found;
  }
}

void Kcas::complete_rdcss(Ref rdcss) {
  const layout::KcasDescriptor& d = descriptor(rdcss.entry);
  if (d.rdcss_state.load(std::memory_order_acquire) != state_of(rdcss.seq, kUndecided)) return;  // done
  const std::uint64_t offset = d.rdcss_word.load(std::memory_order_relaxed);
  const std::uint64_t expected = d.rdcss_expected.load(std::memory_order_relaxed);
  const std::uint64_t kcas_ref = d.rdcss_kcas.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (d.rdcss_state.load(std::memory_order_relaxed) != state_of(rdcss.seq, kUndecided)) return;
  check_offset(offset);
  if (!is_ref(kcas_ref) || decode_ref(kcas_ref).rdcss || decode_ref(kcas_ref).entry >= region_.fixed().max_processes) {
    corrupt(region_, "a lock-free install names no operation");
  }
  const Ref kcas = decode_ref(kcas_ref);
  const bool undecided = descriptor(kcas.entry).kcas_state.load(std::memory_order_acquire) == state_of(kcas.seq, kUndecided);
  std::uint64_t current = encode_ref(rdcss);
  word(offset).compare_exchange_strong(current, undecided ? kcas_ref : expected, std::memory_order_acq_rel,
                                       std::memory_order_relaxed);
}

void Kcas::resolve(std::uint64_t offset, std::uint64_t value) {
  const Ref r = decode_ref(value);
  if (r.entry >= region_.fixed().max_processes) corrupt(region_, "a word refers to attachment entry " + std::to_string(r.entry));
  if (r.rdcss) {
    complete_rdcss(r);
  } else {
    help(r);
    detail::fault_point(testing::FaultPoint::kKcasResolveHelped);
    // The owner's direct install (kcas.hpp, THE OWNER'S DIRECT INSTALLS) is no RDCSS: an
    // owner that read "undecided" and stalled before installing this word may install it
    // after the decision, once, after our phase 2 put the word's final value back. That
    // use is still current (its owner is inside run() and finalizes it itself): finish it
    // again, once. Helpers cannot install late (their installs are RDCSS).
    if (word(offset).load(std::memory_order_acquire) == value) help(r);
  }
  // Once helped (twice at most, above), the reference is gone from the word for good: a
  // KCAS reference is installed in a word by helpers only before the decision and by the
  // owner at most once, and phase 2 removes it from every word the operation names; an
  // RDCSS reference is swapped out by complete_rdcss() or by its owner before its state
  // moves. One still in place names an operation that is over, unpublished, or not about
  // this word: helping again would never end.
  if (word(offset).load(std::memory_order_acquire) == value) {
    corrupt(region_, "the word at offset " + std::to_string(offset) +
                         " refers to a lock-free operation that is over or does not name it");
  }
}

std::uint64_t Kcas::read_slow(std::uint64_t offset) {
  std::atomic<std::uint64_t>& w = word(offset);
  for (;;) {
    const std::uint64_t value = w.load(std::memory_order_acquire);
    if (!is_ref(value)) return value;
    resolve(offset, value);
  }
}

void Kcas::finish_entry(std::uint32_t e) {
  layout::KcasDescriptor& d = descriptor(e);
  const std::uint64_t rdcss = d.rdcss_state.load(std::memory_order_acquire);
  if (status_of(rdcss) == kUndecided) complete_rdcss({e, true, seq_of(rdcss)});
  const std::uint64_t kcas = d.kcas_state.load(std::memory_order_acquire);
  if (seq_of(kcas) != 0 && status_of(kcas) != kPreparing) help({e, false, seq_of(kcas)});
}

void Kcas::help_all() {
  const std::uint32_t entries = std::min(region_.header().entry_high_water.load(std::memory_order_acquire),
                                         region_.fixed().max_processes);
  for (std::uint32_t e = 0; e < entries; ++e) finish_entry(e);
}

}  // namespace shmht::lockfree
