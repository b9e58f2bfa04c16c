// seed_scenario.hpp - pyshmht's multiprocess-test.py as a harness scenario
// (--scenario seed), so every store can be put through the run that showed pyshmht slow,
// lossy and bloated.
//
// The test (gatopeich/pyshmht, multiprocess-test.py; its README's runs):
//   * the table is opened with capacity = the item count W (333,333 in the README);
//   * N processes, letters "abcdefghijklnmo" (sic, as in the test), each sets
//     int(W / N) items: key str(i) + letter, value letter x 7 ("76930b" -> "bbbbbbb");
//   * when all have finished, one process iterates the whole table twice: len(d) (a
//     foreach that counts) and d.keys() (a foreach that collects).
// Here worker w sets its share; worker 0 then waits for the others (the wait is not
// charged to its CPU figures), runs the two passes (timed: the iterate phase), and,
// outside any timing, checks the second pass against the expected key set exactly:
// keys missing, keys seen more than once, keys that no worker wrote (torn), and values
// that are not their key's letter x 7.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared_control.hpp"
#include "store.hpp"

namespace shmht::harness::seed_scenario {

// As in multiprocess-test.py; the letter names the process.
inline constexpr std::string_view kLetters = "abcdefghijklnmo";
inline constexpr std::uint32_t kMaxProcesses = kLetters.size();
inline constexpr std::size_t kValueRepeat = 7;

std::uint64_t items_per_worker(std::uint64_t items, std::uint32_t processes);
std::string key(std::uint64_t index, std::uint32_t worker);
std::string value(std::uint32_t worker);

// What the second iteration pass saw, compared with what the workers wrote.
struct Verdict {
  std::uint64_t expected = 0;    // processes x items_per_worker
  std::uint64_t seen = 0;        // entries the pass yielded
  std::uint64_t missing = 0;     // expected keys never seen
  std::uint64_t duplicated = 0;  // extra sightings of a key seen more than once
  std::uint64_t unexpected = 0;  // keys no worker wrote (a torn copy, or foreign data)
  std::uint64_t values_wrong = 0;  // expected key, but not its letter x 7
};

Verdict verify(const std::vector<std::pair<std::string, std::string>>& entries, std::uint32_t processes,
               std::uint64_t per_worker);

// The scenario's timed work in one worker (after the start barrier); fills `report`.
// lockstep_every: 0, or meet the other workers every that many sets (WorkloadSpec).
void run(StoreSession& session, ControlBlock& control, std::uint32_t worker, std::uint32_t processes,
         std::uint64_t items, std::uint32_t lockstep_every, WorkerReport& report);

}  // namespace shmht::harness::seed_scenario
