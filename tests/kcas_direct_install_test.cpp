// kcas_direct_install_test.cpp - the lock-free KCAS's owner installs some words with one
// plain CAS instead of RDCSS (engines/lockfree/kcas.hpp, THE OWNER'S DIRECT INSTALLS): only
// words that cannot hold their expected value again once the operation succeeded. This test
// builds the interleaving RDCSS exists for, deterministically, and shows that the engine
// survives it while the deliberately broken variant (testing::Flaw::kDirectInstallOfAnyWord:
// the owner installs every word directly, a shifted slot included) does not: the history the
// test records is linearizable for the engine and rejected by tests/linearizability.hpp for
// the broken variant, and `check` agrees.
//
// The interleaving. Keys k0 and kn have home slot h, k1 has home h + 1; the table holds k0
// (slot h) and k1 (slot h + 1). P inserts kn: its KCAS expects the item counter, the
// bucket's version, slot h + 1 (k1, which moves right) and slot h + 2 (empty). P stops just
// before installing its third word (slot h + 1). The parent's size() reads P's counter,
// meets P's reference there and finishes P's insert (kn at h + 1, k1 at h + 2). The parent
// erases kn: k1 moves back to h + 1, h + 2 is empty again, and slot h + 1 holds exactly the
// word P expects there. P resumes. With RDCSS its install is conditional on its operation
// being undecided, so it puts the word back. Installed directly, the late reference is
// finalized as SUCCEEDED: kn's word (naming the record the erase freed) is back at h + 1,
// and when the parent inserts kn again into that very record, the insert finds kn present.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "hash.hpp"
#include "layout/header.hpp"
#include "linearizability.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "home_slots.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using lin::Op;
using lin::OpKind;
using lin::Verdict;
using testing::FaultPoint;

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// P's hook: stop (SIGSTOP) before the owner's third install of its insert.
std::atomic<int> g_installs{0};
void stop_before_third_install(FaultPoint reached) {
  if (reached == FaultPoint::kKcasOwnerInstalling && g_installs.fetch_add(1) + 1 == 3) raise(SIGSTOP);
}

struct Outcome {
  std::vector<Op> k1_history, kn_history;
  bool check_clean = false;
  std::string check_problem;
};

// Runs the interleaving above; `flaw` is set in P only.
Outcome run_interleaving(testing::Flaw flaw) {
  Outcome out;
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 64, .engine = Engine::kLockFreeRobinHood});
  const HomeSlots homes(parent.path());
  EXPECT_TRUE(homes.ok());
  // h and h + 2 in one bucket: one version word, so P's words are counter, version, h + 1, h + 2.
  const std::uint64_t h = 7 * 2 + 1;
  const std::string k0 = homes.key_at("zero", h), k1 = homes.key_at("one", h + 1), kn = homes.key_at("new", h);
  // Values: 1 = k0's, 2 = k1's, 3 = kn's (lin::Op values; 0 means absent).
  const std::int64_t t0 = now_ns();
  EXPECT_TRUE(parent.insert(k0, "v1"));
  EXPECT_TRUE(parent.insert(k1, "v2"));
  const std::int64_t t1 = now_ns();
  out.k1_history.push_back({.process = 0, .kind = OpKind::kInsert, .value = 2, .result = true, .call = t0, .ret = t1});

  SharedArray<std::int64_t> p_times(2);
  Children children;
  const pid_t p = children.spawn([&] {
    Table t = Table::open(name);
    testing::set_flaw(flaw);
    testing::set_fault_hook(stop_before_third_install);
    p_times[0] = now_ns();
    const bool inserted = t.insert(kn, "v3");
    p_times[1] = now_ns();
    return inserted ? 0 : 4;
  });
  if (!wait_until_stopped(p, std::chrono::seconds(20))) {
    ADD_FAILURE() << "P never stopped before its third install";
    return out;
  }
  // size() reads P's item counter through the KCAS, which finishes P's insert.
  EXPECT_EQ(parent.size(), 3u) << "the parent's size() finishes P's insert";
  std::int64_t call = now_ns();
  const bool kn_seen = parent.get(kn) == std::optional<std::string>("v3");
  std::int64_t ret = now_ns();
  out.kn_history.push_back({.process = 0, .kind = OpKind::kGet, .value = kn_seen ? 3u : 0u, .result = kn_seen, .call = call, .ret = ret});
  call = now_ns();
  const bool erased = parent.erase(kn);
  ret = now_ns();
  out.kn_history.push_back({.process = 0, .kind = OpKind::kErase, .value = 0, .result = erased, .call = call, .ret = ret});

  kill(p, SIGCONT);
  const auto done = children.wait_all(std::chrono::seconds(20));
  EXPECT_EQ(done.size(), 1u);
  if (done.size() == 1) {
    EXPECT_TRUE(done[0].exited && done[0].code_or_signal == 0) << "P's insert of kn did not return true";
  }
  out.kn_history.push_back({.process = 1, .kind = OpKind::kInsert, .value = 3, .result = true, .call = p_times[0], .ret = p_times[1]});

  // kn again: its record is the one the erase freed (the parent's free list hands it back
  // first), so a stale word still naming it makes this insert find kn "present".
  call = now_ns();
  const bool reinserted = parent.insert(kn, "v4");
  ret = now_ns();
  out.kn_history.push_back({.process = 0, .kind = OpKind::kInsert, .value = 4, .result = reinserted, .call = call, .ret = ret});
  call = now_ns();
  const std::optional<std::string> k1_seen = parent.get(k1);
  ret = now_ns();
  out.k1_history.push_back({.process = 0, .kind = OpKind::kGet, .value = k1_seen ? (k1_seen == "v2" ? 2u : 99u) : 0u,
                            .result = k1_seen.has_value(), .call = call, .ret = ret});
  const CheckReport report = check_table(name);
  out.check_clean = report.clean;
  out.check_problem = report.problems.empty() ? "" : report.problems.front();
  return out;
}

Verdict::Kind verdict(std::vector<Op> history) { return lin::Checker(std::move(history)).check(1'000'000).kind; }

TEST(KcasDirectInstall, TheOwnersLateInstallIntoAShiftedSlotLeavesNoTrace) {
  const Outcome out = run_interleaving(testing::Flaw::kNone);
  EXPECT_EQ(verdict(out.kn_history), Verdict::kLinearizable);
  EXPECT_EQ(verdict(out.k1_history), Verdict::kLinearizable);
  EXPECT_TRUE(out.check_clean) << out.check_problem;
}

TEST(KcasDirectInstall, TheBrokenVariantThatInstallsEveryWordDirectlyIsCaught) {
  const Outcome out = run_interleaving(testing::Flaw::kDirectInstallOfAnyWord);
  // P's late reference in slot h + 1 is finalized as its insert's success: kn's word comes
  // back, naming the record the erase freed, and the next insert of kn finds it "present".
  EXPECT_EQ(verdict(out.kn_history), Verdict::kNotLinearizable);
  EXPECT_FALSE(out.check_clean) << "check found nothing wrong with the broken variant's table";
}

}  // namespace
}  // namespace shmht::test
