// engines/recovery.hpp - putting a table right after a process died inside it.
//
// WHAT A DEAD PROCESS CAN LEAVE
//   - lock state naming it: an odd seqlock bucket, a striped writer word or reader flag,
//     the global engine's robust mutex (OWNER_DIED);
//   - one interrupted Robin Hood shift per write it was in: an adjacent duplicate
//     (robin_hood.hpp), which must be removed before anyone frees the duplicated record;
//   - an item counter that disagrees with the slots by the one write it did not count;
//   - its allocator state (arena.hpp), which the next holder of its entry inherits.
//
// TWO PATHS
//   Warm: other processes are live. Whoever meets a lock word of a dead owner
//   (engines/owner.hpp decides "dead" once per owner, never from an error) takes an
//   exclusive scope over the whole table, taking over every unit the dead held,
//   and runs repair_and_recount. The global engine learns of the death from the kernel
//   (EOWNERDEAD) and does the same.
//   Cold: an attacher finds no live attachment at all (liveness.hpp), and either some
//   attachment died attached (a cold start that was interrupted included) or the engine
//   changes. Then nobody can hold anything: every lock word is stale, whoever wrote it
//   (a process killed, a machine rebooted, a file copied while a lock was held: OFD locks
//   neither survive a reboot nor follow a copy). cold_start() repairs and recounts first,
//   then resets every engine's lock state for the engine being attached, all under the
//   admin lock, so nobody attaches meanwhile.
//   Read-only handles are no attachments and take no lock, so nothing waits for them:
//   the header's rewrite_epoch is odd while the cold start rewrites, and they read around
//   it (engines/read_only.cpp), never blocking it.
//
// A CRASH DURING RECOVERY
//   Warm: the recovering process holds everything as an ordinary writer would; its own
//   death is one more dead owner, and the repair is itself a backward shift that an
//   interruption leaves repairable. Cold: the recovering attacher has taken its entry and
//   marked it attached before the first change, and dead attachments are marked detached
//   only after the last: whoever attaches next finds a dead attachment and starts over.
//   Every step is idempotent: repair finds what is left, the recount recomputes the
//   difference, the reset writes fixed values.
#pragma once

#include <cstdint>

#include "growth.hpp"
#include "layout/slot.hpp"
#include "region.hpp"

namespace shmht::recovery {

// Removes the duplicates interrupted shifts left, then credits `credit_entry` with the
// difference between the occupied slots and the sum of every entry's item counter.
// The caller excludes every other writer and reader. Returns the shifts repaired.
// During a migration it repairs both arrays and removes what a killed mover copied of a
// group that has not MOVED (growth.hpp).
std::uint64_t repair_and_recount(Region& region, const growth::ArrayView& view, std::uint32_t credit_entry);

// The cold path above (a Region::attach ColdStart). The caller holds the admin lock and
// is the only live attachment. Without `recover` (nobody died attached, the engine stays)
// no lock can be held, and the lock words that name a holder are judged by their waiters
// (owner.hpp); but the global engine's pthread mutex names a thread id no waiter can
// judge, so a foreign or corrupt file could leave it claiming a holder (every lock()
// would wait forever) or being another kind of mutex: it is initialised afresh
// (fuzz/regressions/table_file/global-mutex-held-by-nobody-hang).
std::uint64_t cold_start(Region& region, std::uint32_t own_entry, std::uint32_t engine, std::uint32_t stripes,
                         bool recover);

}  // namespace shmht::recovery
