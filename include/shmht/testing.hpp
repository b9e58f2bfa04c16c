// shmht/testing.hpp - fault injection for crash tests. Not for production use.
//
// Engines call a fault point at named places inside their write paths. A test installs a
// hook (for example one that raises SIGKILL at kAfterLock) in a forked child to kill it
// exactly there, then checks that the survivors repair the table. At the kKcas* points a
// hook may also throw (standing for an allocation failure, or a corruption found while
// helping): the exception leaves the operation through the caller, as those would.
#pragma once

namespace shmht::testing {

enum class FaultPoint {
  kAfterLock,         // the write lock (or sequence) is held; nothing written yet
  kAfterSlotWrite,    // one slot word of the operation has been written
  kMidShift,          // a Robin Hood shift has moved at least one slot, not all
  kBeforeUnlock,      // every slot written, counters not yet, lock still held
  kReadLocked,        // a reader holds its lock (global mutex, striped stripe shared)
  kAfterChunkClaim,   // a new arena chunk is claimed, not yet recorded in the entry
  kColdStartMidway,   // cold-start recovery has cleared the old lock state, not set up the new
  kExclusiveHeld,     // `check` holds the whole table exclusively, before it looks at anything
  kKcasPublished,     // lockfree: a multi-word CAS is published, no word holds it yet
  kKcasMidInstall,    // lockfree: its first word holds the descriptor reference
  kKcasDecided,       // lockfree: succeeded or failed is decided, references still in place
  kKcasMidCleanup,    // lockfree: its first word has its final value, the others not yet
  kKcasMidRdcss,      // lockfree: an install (owner's or helper's) is in a word, not yet completed
  kKcasOwnerInstalling,  // lockfree: the owner is about to install one of its words (reached once per word)
  kFreeListChanged,   // an attachment's free list changed, its counters not yet
  kFileGrowthClaimed, // a larger file size is claimed (region.cpp grow_file_to), its space not yet reserved
  // Growth of the slot array (growth.hpp):
  kGrowthArrayClaimed,    // the chunks of a larger slot array are claimed, its offset not yet published
  kGrowthArrayPublished,  // the larger array's offset is published, the migration not yet started
  kGroupMoveMidway,       // a home group is partly copied into the new array, not yet marked MOVED
  kGroupMoved,            // a home group is marked MOVED, its locks (lock engines) still held
  kMigrationFinishing,    // every group is moved, the migration not yet marked finished
  kKcasResolveHelped,  // lockfree: resolve() has helped the KCAS a word refers to, not yet re-read the word (anyone)
  kGrowthResettingControls,  // a grower passed its "still unpublished" check and is about to reset 64 control words
};

using FaultHook = void (*)(FaultPoint);

// Deliberately broken variants of the lock-free engine's fast paths, which the tests that
// guard those paths must catch (a test of a fast path that passes on its broken variant
// proves nothing). Set in a forked child or around one test only.
enum class Flaw {
  kNone,
  // The owner of a multi-word CAS installs every word with a plain CAS, shifted slots and
  // empty ones included (engines/lockfree/kcas.hpp, THE OWNER'S DIRECT INSTALLS).
  kDirectInstallOfAnyWord,
};
void set_flaw(Flaw flaw) noexcept;

// Installs `hook` for this process (nullptr removes it).
void set_fault_hook(FaultHook hook) noexcept;

}  // namespace shmht::testing
