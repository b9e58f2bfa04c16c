// placement.cpp - see placement.hpp for the policies.
#include "placement.hpp"

#include <hwloc/export.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

namespace shmht::harness {
namespace {

// A core and the facts placement needs about it.
struct CoreInfo {
  hwloc_obj_t core;            // a CORE object, or a PU where the topology has no cores
  std::vector<hwloc_obj_t> pus;
  int numa_os_index = -1;
  int numa_rank = 0;           // position of its NUMA node among nodes hosting cores
  int package_index = 0;
};

int numa_node_of(hwloc_topology_t topology, hwloc_obj_t obj) {
  const int nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (node->cpuset && hwloc_bitmap_isincluded(obj->cpuset, node->cpuset)) return static_cast<int>(node->os_index);
  }
  return -1;
}

std::vector<CoreInfo> collect_cores(hwloc_topology_t topology) {
  const hwloc_obj_type_t core_type =
      hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  std::vector<CoreInfo> cores;
  const int count = hwloc_get_nbobjs_by_type(topology, core_type);
  for (int i = 0; i < count; ++i) {
    CoreInfo info;
    info.core = hwloc_get_obj_by_type(topology, core_type, static_cast<unsigned>(i));
    const int pus = hwloc_get_nbobjs_inside_cpuset_by_type(topology, info.core->cpuset, HWLOC_OBJ_PU);
    for (int p = 0; p < pus; ++p) {
      info.pus.push_back(hwloc_get_obj_inside_cpuset_by_type(topology, info.core->cpuset, HWLOC_OBJ_PU,
                                                             static_cast<unsigned>(p)));
    }
    if (info.pus.empty()) continue;
    info.numa_os_index = numa_node_of(topology, info.core);
    hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(topology, HWLOC_OBJ_PACKAGE, info.core);
    info.package_index = package ? static_cast<int>(package->logical_index) : 0;
    cores.push_back(info);
  }
  // Rank NUMA nodes by first appearance in logical core order.
  std::map<int, int> rank_of_node;
  for (const CoreInfo& c : cores) rank_of_node.emplace(c.numa_os_index, static_cast<int>(rank_of_node.size()));
  for (CoreInfo& c : cores) c.numa_rank = rank_of_node[c.numa_os_index];
  return cores;
}

// A (core, hardware thread) pair in the order workers receive them.
struct Seat {
  const CoreInfo* core;
  std::size_t thread;
};

// compact: node by node, every core's first thread, then every core's second thread...
// Within one "layer" of threads, cores of a node stay together.
std::vector<Seat> compact_order(const std::vector<CoreInfo>& cores) {
  std::vector<const CoreInfo*> sorted;
  for (const CoreInfo& c : cores) sorted.push_back(&c);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const CoreInfo* a, const CoreInfo* b) { return a->numa_rank < b->numa_rank; });
  std::size_t max_threads = 0;
  for (const CoreInfo* c : sorted) max_threads = std::max(max_threads, c->pus.size());
  std::vector<Seat> order;
  // Fill one node's cores, then that node's SMT threads, before moving on: "compact"
  // keeps the workers on one node for as long as the node has PUs.
  std::map<int, std::vector<const CoreInfo*>> by_node;
  for (const CoreInfo* c : sorted) by_node[c->numa_rank].push_back(c);
  for (auto& [rank, node_cores] : by_node) {
    for (std::size_t t = 0; t < max_threads; ++t) {
      for (const CoreInfo* c : node_cores) {
        if (t < c->pus.size()) order.push_back({c, t});
      }
    }
  }
  return order;
}

// scatter: one core per NUMA node per round, nodes ordered to alternate packages; all
// first threads before any second thread.
std::vector<Seat> scatter_order(const std::vector<CoreInfo>& cores) {
  // Nodes with their cores, and each node's rank within its package.
  std::map<int, std::vector<const CoreInfo*>> by_node;
  std::map<int, int> package_of_node;
  for (const CoreInfo& c : cores) {
    by_node[c.numa_rank].push_back(&c);
    package_of_node[c.numa_rank] = c.package_index;
  }
  std::map<int, int> nodes_seen_in_package;
  std::vector<std::pair<std::pair<int, int>, int>> keyed;  // ((rank in package, package), node)
  for (auto& [node, cs] : by_node) {
    const int package = package_of_node[node];
    keyed.push_back({{nodes_seen_in_package[package]++, package}, node});
  }
  std::sort(keyed.begin(), keyed.end());

  std::size_t max_threads = 0, max_cores = 0;
  for (const CoreInfo& c : cores) max_threads = std::max(max_threads, c.pus.size());
  for (auto& [node, cs] : by_node) max_cores = std::max(max_cores, cs.size());
  std::vector<Seat> order;
  for (std::size_t t = 0; t < max_threads; ++t) {
    for (std::size_t round = 0; round < max_cores; ++round) {
      for (auto& [key, node] : keyed) {
        const auto& cs = by_node[node];
        if (round < cs.size() && t < cs[round]->pus.size()) order.push_back({cs[round], t});
      }
    }
  }
  return order;
}

std::string bitmap_list(hwloc_const_bitmap_t bitmap) {
  char* text = nullptr;
  if (hwloc_bitmap_list_asprintf(&text, bitmap) < 0 || text == nullptr) return "?";
  std::string out = text;
  std::free(text);
  return out;
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

std::optional<CpuPolicy> parse_cpu_policy(std::string_view name) {
  if (name == "none") return CpuPolicy::kNone;
  if (name == "compact") return CpuPolicy::kCompact;
  if (name == "scatter") return CpuPolicy::kScatter;
  return std::nullopt;
}

std::optional<MemoryPolicy> parse_memory_policy(std::string_view name) {
  if (name == "first-touch") return MemoryPolicy::kFirstTouch;
  if (name == "local") return MemoryPolicy::kLocal;
  if (name == "interleave") return MemoryPolicy::kInterleave;
  return std::nullopt;
}

std::string_view cpu_policy_name(CpuPolicy policy) {
  switch (policy) {
    case CpuPolicy::kNone: return "none";
    case CpuPolicy::kCompact: return "compact";
    case CpuPolicy::kScatter: return "scatter";
  }
  return "unknown";
}

std::string_view memory_policy_name(MemoryPolicy policy) {
  switch (policy) {
    case MemoryPolicy::kFirstTouch: return "first-touch";
    case MemoryPolicy::kLocal: return "local";
    case MemoryPolicy::kInterleave: return "interleave";
  }
  return "unknown";
}

std::vector<WorkerPlacement> plan_placement(hwloc_topology_t topology, CpuPolicy policy, int workers) {
  std::vector<WorkerPlacement> plan(static_cast<std::size_t>(std::max(workers, 0)));
  for (int w = 0; w < workers; ++w) plan[static_cast<std::size_t>(w)].worker = w;
  if (policy == CpuPolicy::kNone || workers <= 0) return plan;

  const std::vector<CoreInfo> cores = collect_cores(topology);
  if (cores.empty()) return plan;
  const std::vector<Seat> order = policy == CpuPolicy::kCompact ? compact_order(cores) : scatter_order(cores);

  std::map<const CoreInfo*, int> workers_on_core;
  for (int w = 0; w < workers; ++w) {
    const Seat& seat = order[static_cast<std::size_t>(w) % order.size()];
    WorkerPlacement& p = plan[static_cast<std::size_t>(w)];
    p.pu_os_index = static_cast<int>(seat.core->pus[seat.thread]->os_index);
    p.core_index = static_cast<int>(seat.core->core->logical_index);
    p.numa_os_index = seat.core->numa_os_index;
    p.package_index = seat.core->package_index;
    p.oversubscribed = static_cast<std::size_t>(w) >= order.size();
    ++workers_on_core[seat.core];
  }
  for (int w = 0; w < workers; ++w) {
    const Seat& seat = order[static_cast<std::size_t>(w) % order.size()];
    plan[static_cast<std::size_t>(w)].shares_core = workers_on_core[seat.core] > 1;
  }
  // Oversubscription also makes the first occupant of a PU share it.
  std::map<int, int> workers_on_pu;
  for (const WorkerPlacement& p : plan) ++workers_on_pu[p.pu_os_index];
  for (WorkerPlacement& p : plan) p.oversubscribed = workers_on_pu[p.pu_os_index] > 1;
  return plan;
}

std::vector<int> numa_nodes_used(hwloc_topology_t topology, const std::vector<WorkerPlacement>& plan) {
  std::set<int> nodes;
  for (const WorkerPlacement& p : plan) {
    if (p.numa_os_index >= 0) nodes.insert(p.numa_os_index);
  }
  if (nodes.empty()) {
    const int count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < count; ++i) {
      nodes.insert(static_cast<int>(hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i))->os_index));
    }
  }
  return {nodes.begin(), nodes.end()};
}

BindingOutcome bind_worker_cpu(hwloc_topology_t topology, const WorkerPlacement& placement) {
  BindingOutcome outcome;
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (placement.pu_os_index >= 0) {
    hwloc_bitmap_only(set, static_cast<unsigned>(placement.pu_os_index));
    if (hwloc_set_cpubind(topology, set, HWLOC_CPUBIND_PROCESS) != 0) outcome.error = errno_text("hwloc_set_cpubind");
  }
  if (hwloc_get_cpubind(topology, set, HWLOC_CPUBIND_PROCESS) == 0) {
    outcome.obtained = bitmap_list(set);
  } else if (outcome.error.empty()) {
    outcome.error = errno_text("hwloc_get_cpubind");
  }
  hwloc_bitmap_free(set);
  return outcome;
}

BindingOutcome bind_process_memory(hwloc_topology_t topology, MemoryPolicy policy,
                                   const WorkerPlacement& placement, const std::vector<int>& nodes_used) {
  BindingOutcome outcome;
  hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
  hwloc_membind_policy_t hwloc_policy = HWLOC_MEMBIND_DEFAULT;
  if (policy == MemoryPolicy::kInterleave) {
    for (int n : nodes_used) hwloc_bitmap_set(nodes, static_cast<unsigned>(n));
    hwloc_policy = HWLOC_MEMBIND_INTERLEAVE;
  } else if (policy == MemoryPolicy::kLocal) {
    const int node = placement.numa_os_index >= 0 ? placement.numa_os_index : (nodes_used.empty() ? 0 : nodes_used[0]);
    hwloc_bitmap_only(nodes, static_cast<unsigned>(node));
    hwloc_policy = HWLOC_MEMBIND_BIND;
  }
  if (policy != MemoryPolicy::kFirstTouch &&
      hwloc_set_membind(topology, nodes, hwloc_policy, HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) != 0) {
    outcome.error = errno_text("hwloc_set_membind");
  }
  hwloc_membind_policy_t obtained_policy{};
  if (hwloc_get_membind(topology, nodes, &obtained_policy, HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) == 0) {
    outcome.obtained = bitmap_list(nodes);
    switch (obtained_policy) {
      case HWLOC_MEMBIND_DEFAULT: outcome.policy = "default"; break;
      case HWLOC_MEMBIND_FIRSTTOUCH: outcome.policy = "first-touch"; break;
      case HWLOC_MEMBIND_BIND: outcome.policy = "bind"; break;
      case HWLOC_MEMBIND_INTERLEAVE: outcome.policy = "interleave"; break;
      case HWLOC_MEMBIND_NEXTTOUCH: outcome.policy = "next-touch"; break;
      default: outcome.policy = "mixed"; break;
    }
  } else if (outcome.error.empty()) {
    outcome.error = errno_text("hwloc_get_membind");
  }
  hwloc_bitmap_free(nodes);
  return outcome;
}

TopologySummary summarize_topology(hwloc_topology_t topology) {
  TopologySummary s;
  s.packages = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PACKAGE);
  s.numa_nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  s.cores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
  s.pus = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);
  char buffer[1024];
  if (hwloc_topology_export_synthetic(topology, buffer, sizeof buffer, 0) >= 0) s.synthetic = buffer;
  return s;
}

}  // namespace shmht::harness
