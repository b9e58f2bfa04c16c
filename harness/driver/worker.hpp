// worker.hpp - one worker process: bind, attach, wait at the barrier, run the timed
// phase, report through the shared control block, exit.
#pragma once

#include <hwloc.h>

#include <cstdint>
#include <vector>

#include "placement.hpp"
#include "shared_control.hpp"
#include "store.hpp"
#include "workload.hpp"

namespace shmht::harness {

struct WorkerContext {
  std::uint32_t index = 0;
  std::uint32_t processes = 1;
  std::uint64_t ops = 0;  // this worker's share in op-count mode; 0 in duration mode
  const WorkloadSpec* spec = nullptr;
  const KeyChooser* keys = nullptr;
  const OpMix* mix = nullptr;
  Store* store = nullptr;
  bool prefill_here = false;  // process-private stores: the worker loads its own data
  // Operations per round trip in the timed phase: --batch for a pipelined store
  // (StoreKind::pipelined), 1 otherwise.
  std::uint32_t pipeline_depth = 1;
  LatencyTiming latency_timing = LatencyTiming::kEvery;
  hwloc_topology_t topology = nullptr;
  WorkerPlacement placement;
  MemoryPolicy memory_policy = MemoryPolicy::kFirstTouch;
  std::vector<int> nodes_used;
  ControlBlock* control = nullptr;
};

// Runs in the child after fork and never returns (it _exit()s, so no destructor of an
// object inherited from the parent, such as the parent's Table handle, runs here).
[[noreturn]] void run_worker(const WorkerContext& context);

// Inserts the first spec.prefill * spec.keys keys (used by the parent, or by the worker
// of a process-private store), pipeline_depth per round trip where the session can
// pipeline (Redis: the prefill is not timed, and one round trip per key would make it
// the slowest part of a cell).
void prefill(StoreSession& session, const WorkloadSpec& spec, std::uint32_t pipeline_depth);

}  // namespace shmht::harness
