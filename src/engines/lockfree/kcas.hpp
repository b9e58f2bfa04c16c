// engines/lockfree/kcas.hpp - a multi-word compare-and-swap between processes, with
// descriptors that live in the region and are reused in place.
//
// WHAT IT DOES
//   run(changes): if every word holds its expected value, every word gets its desired
//   value, atomically (linearizable); otherwise nothing changes. Lock-free: a process
//   that finds another's operation in a word it needs finishes that operation first, so
//   a process stopped or killed at any instruction never blocks anyone.
//
// THE ALGORITHM (Harris, Fraser, Pratt, "A Practical Multi-Word Compare-and-Swap
// Operation", DISC 2002)
//   Phase 1: for each word in address order, install a reference to the descriptor
//   with RDCSS: "if the descriptor is still undecided, swap expected -> reference". A
//   word that holds another operation's reference: help that one finish, then retry. A
//   word with neither the expected value nor our reference: the KCAS fails.
//   Decision: one CAS of the descriptor's status, undecided -> succeeded or failed.
//   Phase 2: for each word, CAS reference -> desired (succeeded) or -> expected (failed).
//   Anyone who meets a reference runs the same phases from the descriptor's contents;
//   the linearization point is the decision. Address order makes helping acyclic.
//   RDCSS (double-compare single-swap) makes the install conditional on the status, so a
//   helper that wakes up late cannot leave a reference in a word after the decision:
//   phase 2 completes any RDCSS it finds in a word before finalizing it (finalize()).
//
// DESCRIPTORS, REUSED IN PLACE (Arbel-Raviv, Brown, "Reuse, don't Recycle", DISC 2017)
//   Each attachment entry has one KCAS descriptor and one RDCSS descriptor
//   (layout::KcasDescriptor), addressed by entry index: no pointers, nothing to free.
//   A reference carries the descriptor's sequence number; the owner bumps it (status
//   kPreparing) before rewriting the fields and publishes kUndecided after. A helper
//   copies the fields, then re-reads the state: a different sequence means the
//   operation it was helping is over (its owner only reuses the descriptor after its
//   phase 2, so no word still refers to the old sequence), and the copy is discarded.
//
// REFERENCE WORDS (they replace a slot, control or counter word while an operation runs)
//   63          48 47     40 39                              0
//   +-------------+---------+--------------------------------+
//   | value >> 40 |  0xFF   | value & (2^40 - 1)             |    value (56 bits) =
//   +-------------+---------+--------------------------------+    seq << 13 | rdcss << 12 | entry
//   Bits 40..47 all ones never occur in a slot word (dist <= kMaxDist = 254), in a
//   version (40 bits) or in a counter (40 bits).
//
// THE OWNER'S DIRECT INSTALLS (Install::kDirect: one CAS where RDCSS takes two, and no
// RDCSS descriptor to write)
//   RDCSS exists for one hazard: an install that lands after the decision, in a word that
//   holds `expected` again by then, leaves a reference behind that nothing can finalize
//   once the descriptor moves on. The owner may install a word with a plain CAS
//   (expected -> reference) when that hazard cannot arise for it:
//     - its descriptor cannot move on: the owner is inside run(), and reuses it only after
//       its own phase 2, which finalizes every word (a late reference of ours included);
//       a helper that meets such a late reference meanwhile finalizes it the same way;
//     - a late install finalized as FAILED gets `expected` back, which is exactly what the
//       word held when the late CAS succeeded: nothing changed;
//     - a late install after SUCCESS needs the word to hold `expected` again after it was
//       given `desired`. The engine marks kDirect only words where that cannot happen
//       while the owner is inside run(): a bucket version or an item counter (they only
//       grow, mod 2^40: the wrap is the ABA window of any tagged word, as for sequences
//       below), a word compared and kept (expected == desired: nothing to undo; run()
//       treats every such word as kDirect), and a slot whose expected word names a record
//       this very operation unlinks (an overwrite's old record, an erased key's): that
//       record is freed only after run() returns, so no slot can name it again before.
//   A late direct install may land after a helper's phase 2 has finalized the word: the
//   reference is back once, in a word whose operation is decided but still current. A
//   process that meets it finishes that operation again (resolve() helps twice before it
//   calls a lingering reference corrupt), and the owner's own phase 2 would anyway.
//   Helpers always install with RDCSS: a helper's descriptor copy may be of a use that is
//   over, so none of the above holds for it. A slot word of a shift (the word moves on and
//   may come back) or an empty slot (empties come back all the time) is never kDirect;
//   testing::Flaw::kDirectInstallOfAnyWord makes them so, and tests/kcas_direct_install_test.cpp
//   shows an erased key's word come back, naming a freed record.
//
// SEQUENCES WRAP (43 bits, the most a reference holds beside a 12-bit entry and the flag)
//   A state word keeps the same 43 bits (state_of masks, next_seq wraps past 2^43 - 1 to
//   1, skipping 0, which means "never used"), so a reference and its state always
//   compare the same bits. Keeping more bits in the state than in the reference made
//   every operation past 2^43 fail its own checks: an install "succeeded" without
//   installing, a write reported success and changed nothing.
//   Wrap-around is safe because at most two uses of one descriptor are live at once: the
//   current one, and the one a helper copied before it was reused. A reference to a
//   use is installed only while it is undecided, and its owner reuses the descriptor
//   only after phase 2 removed it from every word; a helper that copied an older use
//   notices the moved sequence before it acts (copy_words, and every install is an RDCSS
//   conditional on the current state). The only confusion left is a helper that stalls
//   between two of those checks while the owner runs exactly a multiple of 2^43 - 1 more
//   operations (the period, as 0 is skipped: days at tens of millions of operations a
//   second): the ABA window of any tagged word, accepted for the same reason.
//
// A PROCESS THAT DIES OR STOPS
//   Its references are finished by whoever meets them, as part of their own operation.
//   Before the heir of a dead entry reuses its descriptors it finishes what they describe:
//   the RDCSS descriptor at its first install (install() completes an undecided one first;
//   the heir installs as soon as it helps another entry's operation, which help_all may do
//   before it reaches the heir's own entry), the KCAS descriptor before its first run()
//   (attaching to a dead entry runs help_all(), which runs finish_entry for every entry;
//   cold start and check do too).
//
// AN EXCEPTION THAT LEAVES run()
//   kCorrupt from resolve() or the depth guard, or bad_alloc while copying a descriptor to
//   help it, can leave run() between publishing and phase 2, with references in words.
//   run() then remembers that its descriptor's last use may be unfinished (as it assumes
//   of a new handle, whose entry's previous holder may have closed cleanly after such an
//   exception) and, before reusing the descriptor, finishes it as any helper would
//   (finish_entry). A reader that meets those references meanwhile finishes them too:
//   the use is still current, so helping it works. What the caller saw is an exception:
//   the write may or may not have taken effect, as for any write interrupted by one.
//
// MEMORY ORDER
//   Portable, no TSO assumed: installs, decisions and finalizations are acq_rel CASes;
//   descriptor fields are written after the new sequence (relaxed store, release fence)
//   and copied before re-reading it (acquire fence), so a helper that read any new field
//   sees the new sequence (fence-to-fence synchronization). The fences cost nothing on
//   x86-64.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "growth.hpp"
#include "layout/engine_area.hpp"
#include "region.hpp"

namespace shmht::lockfree {

inline constexpr std::uint64_t kValueMask = (std::uint64_t{1} << 40) - 1;  // versions, counters
// The version every control word of a lock-free slot array starts at. Never 0: a punched
// array (growth.hpp) reads as zeros, and no operation may expect those (see the engine).
inline constexpr std::uint64_t kInitialVersion = 1;
inline constexpr unsigned kSeqBits = 43;  // 56 value bits of a reference, less 12 (entry) and 1 (rdcss)

struct Ref {
  std::uint32_t entry;
  bool rdcss;
  std::uint64_t seq;
};

constexpr bool is_ref(std::uint64_t word) noexcept { return ((word >> 40) & 0xFF) == 0xFF; }
constexpr std::uint64_t encode_ref(Ref r) noexcept {
  const std::uint64_t value = ((r.seq & ((std::uint64_t{1} << kSeqBits) - 1)) << 13) | (std::uint64_t{r.rdcss} << 12) | r.entry;
  return ((value >> 40) << 48) | (std::uint64_t{0xFF} << 40) | (value & kValueMask);
}
constexpr Ref decode_ref(std::uint64_t word) noexcept {
  const std::uint64_t value = ((word >> 48) << 40) | (word & kValueMask);
  return {static_cast<std::uint32_t>(value & 0xFFF), ((value >> 12) & 1) != 0, value >> 13};
}
static_assert(is_ref(encode_ref({4095, true, (std::uint64_t{1} << 43) - 1})));
static_assert(decode_ref(encode_ref({4095, true, (std::uint64_t{1} << 43) - 1})).seq == (std::uint64_t{1} << 43) - 1);
static_assert(decode_ref(encode_ref({17, false, 5})).entry == 17 && !decode_ref(encode_ref({17, false, 5})).rdcss);
static_assert(!is_ref(kValueMask), "a 40-bit version or counter is never a reference");

// Descriptor status, the low two bits of kcas_state / rdcss_state.
enum Status : std::uint64_t { kPreparing = 0, kUndecided = 1, kSucceeded = 2, kFailed = 3 };
// A reference carries 43 bits of sequence, so a state keeps exactly those bits: every
// comparison of a reference's sequence with a state's is then of the same bits (bits a
// file of an older build kept above them are ignored). See SEQUENCES WRAP above.
inline constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << kSeqBits) - 1;
constexpr std::uint64_t state_of(std::uint64_t seq, Status status) noexcept { return ((seq & kSeqMask) << 2) | status; }
constexpr std::uint64_t seq_of(std::uint64_t state) noexcept { return (state >> 2) & kSeqMask; }
constexpr Status status_of(std::uint64_t state) noexcept { return static_cast<Status>(state & 3); }
// The use after `seq`: wraps within 43 bits and skips 0, which means "never used".
constexpr std::uint64_t next_seq(std::uint64_t seq) noexcept {
  const std::uint64_t next = (seq + 1) & kSeqMask;
  return next == 0 ? 1 : next;
}
static_assert(state_of(0, kPreparing) == 0, "a zeroed descriptor was never used (sequence 0)");
static_assert(next_seq(kSeqMask) == 1 && next_seq(kSeqMask - 1) == kSeqMask, "sequences wrap past 0");
static_assert(seq_of(state_of(kSeqMask + 5, kUndecided)) == 4, "a state keeps what a reference keeps");
static_assert(decode_ref(encode_ref({3, false, kSeqMask})).seq == kSeqMask, "a reference keeps all 43 bits");

// How the owner installs a word (see THE OWNER'S DIRECT INSTALLS). Helpers always use RDCSS.
enum class Install : std::uint8_t { kConditional, kDirect };

struct WordChange {
  std::uint64_t offset;  // region byte offset of the word
  std::uint64_t expected, desired;
  Install install = Install::kConditional;  // the owner's only: a descriptor does not keep it
};

// Where a fault point fires inside run() (the owner only, not helpers; mid_rdcss: anyone's install).
struct KcasFaults {
// A test's hook may throw at any of them (shmht/testing.hpp).
  static void published();     // descriptor undecided, nothing installed
  static void mid_install();   // the first word holds the reference
  static void decided();       // status decided, references still in place
  static void mid_cleanup();   // the first word has its final value
  static void mid_rdcss();     // an install (owner's or helper's) is in a word, not completed
  static void owner_installing();  // the owner is about to install one of its words (each word)
};

class Kcas {
 public:
  Kcas(Region& region, std::uint32_t own_entry);

  // The multi-word CAS. `changes` sorted by offset, offsets distinct and valid (words
  // of the slot array, or this entry's item counters). At most layout::kMaxKcasWords.
  bool run(std::span<const WordChange> changes);
  // The word's value with no operation in it: finishes whatever operation is there.
  // Inline: every probe step of every lookup reads through it.
  std::uint64_t read(std::uint64_t offset) {
    const std::uint64_t value = word(offset).load(std::memory_order_acquire);
    return is_ref(value) ? read_slow(offset) : value;
  }
  std::atomic<std::uint64_t>& word(std::uint64_t offset) const noexcept { return *region_.at<std::atomic<std::uint64_t>>(offset); }

  // Finishes the operations entry `e`'s descriptors may still describe.
  void finish_entry(std::uint32_t e);
  // finish_entry for every entry that was ever attached.
  void help_all();

  layout::KcasDescriptor& descriptor(std::uint32_t e) const noexcept;
  std::uint32_t own_entry() const noexcept { return own_; }

  // Counters, for the engine's report (helping is what lock-freedom costs).
  std::uint64_t helped() const noexcept { return helped_; }

 private:
  // Runs both phases of `kcas` from its descriptor; its owner passes its own changes
  // (non-empty), which also enables the owner-only fault points.
  bool help(Ref kcas, std::span<const WordChange> own_changes = {});
  // Installs `kcas` into the word at `offset` if it holds `expected` and `kcas` is
  // undecided. Returns the value it found there (expected on success).
  std::uint64_t install(Ref kcas, std::uint64_t offset, std::uint64_t expected);
  // The owner's install of a kDirect word: one CAS, expected -> reference. Same return.
  std::uint64_t install_direct(Ref kcas, std::uint64_t offset, std::uint64_t expected);
  std::uint64_t read_slow(std::uint64_t offset);
  void complete_rdcss(Ref rdcss);
  // Phase 2 on one word: `ref` (a decided operation) -> final_value. RDCSS installs still
  // in the word are completed first: one that read "undecided" before the decision and
  // swaps late would otherwise leave a reference after its descriptor was reused.
  void finalize(std::uint64_t offset, std::uint64_t ref, std::uint64_t final_value);
  // Finishes the operation `value` (a reference found in the word at `offset`) names.
  // A reference still in place after that (its descriptor moved on, was never published,
  // or does not name this word) means a corrupt file: throws, never an endless retry.
  void resolve(std::uint64_t offset, std::uint64_t value);
  // Copies a descriptor's words while its sequence is `seq`; false if it moved on.
  bool copy_words(const layout::KcasDescriptor& d, std::uint64_t seq, std::vector<WordChange>* out) const;
  void check_offset(std::uint64_t offset) const;
  // The word lies in a slot array of a later generation, validated (growth.hpp).
  bool in_grown_array(std::uint64_t offset) const;

  Region& region_;
  std::uint32_t own_;
  std::uint64_t slots_begin_, slots_end_;  // generation 0's slot array's bytes
  // Later generations' arrays, validated once each as they are published: [begin, end)
  // bytes, generation 1 first. A punched array stays here: a stopped operation may still
  // name its words (which read as zeros, so its KCAS fails).
  mutable std::vector<std::pair<std::uint64_t, std::uint64_t>> grown_;
  mutable std::optional<growth::Arrays> arrays_;  // made at the first look past generation 0
  layout::KcasDescriptor* descriptors_;     // entry 0's; the region never moves in this process
  std::uint64_t helped_ = 0;
  std::deque<std::vector<WordChange>> scratch_;  // one per helping depth (deque: stable references)
  std::size_t depth_ = 0;
  // The own descriptor's last use may still have references in words: an exception
  // (kCorrupt from resolve, the depth guard, bad_alloc while copying a descriptor to help
  // it) left run() before its phase 2, or this handle has not yet run anything (the
  // entry's previous holder may have been cut short likewise, then closed cleanly). run()
  // finishes that use before the descriptor moves on.
  bool own_unfinished_ = true;
};

}  // namespace shmht::lockfree
