// placement.hpp - where each worker process runs and where the table's memory lives.
//
// Two halves, kept apart so the first can be tested on machines we cannot reach:
//
//   plan_placement()   pure: (hwloc topology, policy, worker count) -> one PU per worker.
//                      Tested against hwloc synthetic topologies such as
//                      "pack:2 numa:2 core:8 pu:2" (harness/tests/placement_test.cpp).
//   bind_worker_cpu(), bind_process_memory()
//                      side effects on the calling process; they return what the kernel
//                      actually granted (read back), which goes into every result.
//
// CPU policies:
//   compact  fill the cores of one NUMA node before the next (nodes in logical order);
//            the second hardware thread of a core is used only once every core has one
//            worker.
//   scatter  round-robin over NUMA nodes, ordered so that consecutive workers alternate
//            packages (P0N0, P1N0, P0N1, P1N1, ...); again one worker per core first.
//   none     no binding: the scheduler decides.
// With more workers than PUs the order wraps around and the extra workers are marked
// oversubscribed.
//
// Memory policies (set per process with set_mempolicy through hwloc, so they govern the
// table pages that process touches first; the public Table API does not expose the
// mapping's address, so hwloc_set_area_membind is not available to us):
//   first-touch  the kernel default: a page lives on the node of the CPU that touched it.
//   local        bind to the NUMA node of the worker's PU.
//   interleave   interleave over every NUMA node that hosts a worker.
#pragma once

#include <hwloc.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmht::harness {

enum class CpuPolicy { kNone, kCompact, kScatter };
enum class MemoryPolicy { kFirstTouch, kLocal, kInterleave };

std::optional<CpuPolicy> parse_cpu_policy(std::string_view name);
std::optional<MemoryPolicy> parse_memory_policy(std::string_view name);
std::string_view cpu_policy_name(CpuPolicy policy);
std::string_view memory_policy_name(MemoryPolicy policy);

// The plan for one worker. Indexes are hwloc logical indexes except pu_os_index, which
// is the CPU number the kernel uses (what taskset and /proc show). -1: unbound/unknown.
struct WorkerPlacement {
  int worker = 0;
  int pu_os_index = -1;
  int core_index = -1;
  int numa_os_index = -1;
  int package_index = -1;
  bool shares_core = false;     // an SMT sibling of this PU also hosts a worker
  bool oversubscribed = false;  // another worker was planned on the same PU
};

// Pure: reads the topology, changes nothing.
std::vector<WorkerPlacement> plan_placement(hwloc_topology_t topology, CpuPolicy policy, int workers);

// NUMA nodes (OS indexes) that host at least one planned worker; every node if unbound.
std::vector<int> numa_nodes_used(hwloc_topology_t topology, const std::vector<WorkerPlacement>& plan);

// What a bind call obtained, as read back from the kernel.
struct BindingOutcome {
  std::string obtained;  // hwloc list syntax, e.g. "0-3" (cpus) or "0" (nodes)
  std::string policy;    // memory only: the policy the kernel reports
  std::string error;     // empty on success
};

BindingOutcome bind_worker_cpu(hwloc_topology_t topology, const WorkerPlacement& placement);
BindingOutcome bind_process_memory(hwloc_topology_t topology, MemoryPolicy policy,
                                   const WorkerPlacement& placement, const std::vector<int>& nodes_used);

// Counts and the synthetic description (for the result's "topology" record).
struct TopologySummary {
  int packages = 0, numa_nodes = 0, cores = 0, pus = 0;
  std::string synthetic;  // hwloc_topology_export_synthetic, "" if it cannot be expressed
};
TopologySummary summarize_topology(hwloc_topology_t topology);

}  // namespace shmht::harness
