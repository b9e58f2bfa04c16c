// placement_test.cpp - plan_placement() on hwloc synthetic topologies, i.e. on machines
// this project cannot reach (several packages and NUMA nodes, SMT).
#include <gtest/gtest.h>
#include <hwloc.h>

#include <set>
#include <string>

#include "placement.hpp"

namespace shmht::harness {
namespace {

// Owns a synthetic topology for one test.
class SyntheticTopology {
 public:
  explicit SyntheticTopology(const char* description) {
    hwloc_topology_init(&topology_);
    EXPECT_EQ(hwloc_topology_set_synthetic(topology_, description), 0) << description;
    EXPECT_EQ(hwloc_topology_load(topology_), 0);
  }
  ~SyntheticTopology() { hwloc_topology_destroy(topology_); }
  SyntheticTopology(const SyntheticTopology&) = delete;
  SyntheticTopology& operator=(const SyntheticTopology&) = delete;
  hwloc_topology_t get() const { return topology_; }

 private:
  hwloc_topology_t topology_{};
};

// 2 packages x 2 NUMA nodes x 8 cores x 2 threads = 4 nodes, 32 cores, 64 PUs.
constexpr const char* kTwoSocketSmt = "pack:2 numa:2 core:8 pu:2";

TEST(Placement, SummaryCountsTheSyntheticMachine) {
  SyntheticTopology t(kTwoSocketSmt);
  const TopologySummary s = summarize_topology(t.get());
  EXPECT_EQ(s.packages, 2);
  EXPECT_EQ(s.numa_nodes, 4);
  EXPECT_EQ(s.cores, 32);
  EXPECT_EQ(s.pus, 64);
  EXPECT_FALSE(s.synthetic.empty());
}

TEST(Placement, CompactFillsOneNumaNodeBeforeTheNext) {
  SyntheticTopology t(kTwoSocketSmt);
  const auto plan = plan_placement(t.get(), CpuPolicy::kCompact, 8);
  std::set<int> cores, nodes;
  for (const WorkerPlacement& p : plan) {
    cores.insert(p.core_index);
    nodes.insert(p.numa_os_index);
    EXPECT_EQ(p.package_index, 0);
    EXPECT_FALSE(p.shares_core);
    EXPECT_FALSE(p.oversubscribed);
  }
  EXPECT_EQ(cores.size(), 8u) << "one worker per core";
  EXPECT_EQ(nodes.size(), 1u) << "8 workers fit the 8 cores of the first node";
}

TEST(Placement, CompactUsesSmtSiblingsOfTheSameNodeBeforeMovingOn) {
  SyntheticTopology t(kTwoSocketSmt);
  const auto plan = plan_placement(t.get(), CpuPolicy::kCompact, 16);
  std::set<int> nodes, pus;
  for (const WorkerPlacement& p : plan) {
    nodes.insert(p.numa_os_index);
    pus.insert(p.pu_os_index);
    EXPECT_TRUE(p.shares_core);
  }
  EXPECT_EQ(nodes.size(), 1u);
  EXPECT_EQ(pus.size(), 16u);
  // The 17th worker opens the second node.
  const auto more = plan_placement(t.get(), CpuPolicy::kCompact, 17);
  EXPECT_NE(more[16].numa_os_index, more[0].numa_os_index);
}

TEST(Placement, ScatterAlternatesPackagesAndCoversEveryNode) {
  SyntheticTopology t(kTwoSocketSmt);
  const auto plan = plan_placement(t.get(), CpuPolicy::kScatter, 4);
  std::set<int> nodes;
  for (const WorkerPlacement& p : plan) nodes.insert(p.numa_os_index);
  EXPECT_EQ(nodes.size(), 4u) << "4 workers on 4 distinct NUMA nodes";
  EXPECT_NE(plan[0].package_index, plan[1].package_index);
  EXPECT_NE(plan[2].package_index, plan[3].package_index);
}

TEST(Placement, ScatterUsesEveryCoreBeforeAnySmtSibling) {
  SyntheticTopology t(kTwoSocketSmt);
  const auto plan = plan_placement(t.get(), CpuPolicy::kScatter, 32);
  std::set<int> cores;
  for (const WorkerPlacement& p : plan) {
    cores.insert(p.core_index);
    EXPECT_FALSE(p.shares_core);
  }
  EXPECT_EQ(cores.size(), 32u);
}

TEST(Placement, MoreWorkersThanPusWrapAndAreMarkedOversubscribed) {
  SyntheticTopology t("pack:1 numa:1 core:2 pu:1");
  const auto plan = plan_placement(t.get(), CpuPolicy::kCompact, 3);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[2].pu_os_index, plan[0].pu_os_index);
  EXPECT_TRUE(plan[0].oversubscribed);
  EXPECT_FALSE(plan[1].oversubscribed);
  EXPECT_TRUE(plan[2].oversubscribed);
}

TEST(Placement, NoneLeavesEveryWorkerUnbound) {
  SyntheticTopology t(kTwoSocketSmt);
  for (const WorkerPlacement& p : plan_placement(t.get(), CpuPolicy::kNone, 5)) EXPECT_EQ(p.pu_os_index, -1);
}

TEST(Placement, NodesUsedByScatterAreAllNodesAndByCompactOne) {
  SyntheticTopology t(kTwoSocketSmt);
  EXPECT_EQ(numa_nodes_used(t.get(), plan_placement(t.get(), CpuPolicy::kScatter, 4)).size(), 4u);
  EXPECT_EQ(numa_nodes_used(t.get(), plan_placement(t.get(), CpuPolicy::kCompact, 4)).size(), 1u);
  EXPECT_EQ(numa_nodes_used(t.get(), plan_placement(t.get(), CpuPolicy::kNone, 4)).size(), 4u);
}

TEST(Placement, PolicyNamesRoundTrip) {
  for (CpuPolicy p : {CpuPolicy::kNone, CpuPolicy::kCompact, CpuPolicy::kScatter}) {
    EXPECT_EQ(parse_cpu_policy(cpu_policy_name(p)), p);
  }
  for (MemoryPolicy p : {MemoryPolicy::kFirstTouch, MemoryPolicy::kLocal, MemoryPolicy::kInterleave}) {
    EXPECT_EQ(parse_memory_policy(memory_policy_name(p)), p);
  }
  EXPECT_FALSE(parse_cpu_policy("spread").has_value());
}

}  // namespace
}  // namespace shmht::harness
