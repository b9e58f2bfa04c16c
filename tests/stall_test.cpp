// stall_test.cpp - a process stopped (SIGSTOP) in the middle of a write must not stop the
// others, under the lock-free engine; under the lock engines it does, and this test
// records (does not assert) how far the others got, for the paper's contrast.
//
// For each engine and each stage of a write (stage_in maps the lock engines' fault points
// to the lock-free engine's KCAS stages), a staller stops itself at that stage; a
// survivor then runs 10,000 operations over every committed key (so over the staller's
// buckets too). Lock-free: all 10,000 must finish while the staller stays stopped; then
// the staller is resumed, finishes its operation, and check is clean.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>
#include <chrono>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;
using namespace std::chrono_literals;

constexpr std::uint64_t kCapacity = 4000, kCommitted = 3000;  // load ~0.64: inserts shift
constexpr std::uint64_t kSurvivorOps = 10'000;

enum class Op { kInsert, kErase, kAssign };

struct StallCase {
  Engine engine;
  FaultPoint point;  // a lock engine's point; stage_in() gives the engine's own
  Op op;
};

std::string case_name(const ::testing::TestParamInfo<StallCase>& info) {
  static const char* points[] = {"AfterLock", "AfterSlotWrite", "MidShift", "BeforeUnlock"};
  static const char* ops[] = {"Insert", "Erase", "Assign"};
  return std::string(engine_name(info.param.engine)) + "_" + ops[static_cast<int>(info.param.op)] + "_" +
         points[static_cast<int>(info.param.point)];
}

class Stall : public ::testing::TestWithParam<StallCase> {};

TEST_P(Stall, OthersFinishWhileAWriterIsStopped) {
  const StallCase c = GetParam();
  const bool lock_free = c.engine == Engine::kLockFreeRobinHood;
  ScopedName name;
  {
    Table t = Table::create(name, {.capacity = kCapacity, .engine = c.engine});
    for (std::uint64_t i = 0; i < kCommitted; ++i) t.insert(key_of(i), "committed");
  }
  SharedArray<std::atomic<std::uint64_t>> survivor_done(1), staller_at(1);
  Children staller;
  const pid_t stalled = staller.spawn([&] {
    Table t = Table::open(name);
    stop_once_at(stage_in(c.engine, c.point));
    for (std::uint64_t i = 0; i < kCommitted && stop_pending(); ++i) {
      staller_at[0] = i;
      switch (c.op) {
        case Op::kInsert: t.insert("staller-" + std::to_string(i), "s"); break;
        case Op::kErase: t.erase(key_of(kCommitted - 1 - i)); break;
        case Op::kAssign: t.assign(key_of(i), "staller"); break;
      }
    }
    return stop_pending() ? 3 : 0;  // 3: the stage never came
  });
  ASSERT_TRUE(wait_until_stopped(stalled, 20s)) << "the staller never stopped at its stage";

  Children survivor;
  survivor.spawn([&] {
    Table t = Table::open(name);
    for (std::uint64_t n = 0; n < kSurvivorOps; ++n) {
      const std::string key = key_of(n % kCommitted);
      if (n % 2 == 0) {
        t.assign(key, "survivor");
      } else {
        t.get(key);
      }
      survivor_done[0] = n + 1;
    }
    return 0;
  });
  // The lock engines block here: give them 2 s and record how far the survivor got.
  const auto outcomes = lock_free ? survivor.wait_all(60s) : survivor.wait_all(2s, /*overrun_fails=*/false);
  const std::uint64_t done = survivor_done[0];
  RecordProperty("survivor_ops_while_stalled", std::to_string(done));
  std::printf("[ %s ] survivor finished %llu of %llu operations while the writer was stopped\n",
              case_name({c, 0}).c_str(), static_cast<unsigned long long>(done),
              static_cast<unsigned long long>(kSurvivorOps));
  if (lock_free) {
    ASSERT_EQ(done, kSurvivorOps) << "the survivor waited for a stopped process";
    ASSERT_EQ(outcomes.size(), 1u);
    EXPECT_TRUE(outcomes[0].exited && outcomes[0].code_or_signal == 0);
  }

  kill(stalled, SIGCONT);
  const auto resumed = staller.wait_all(30s);
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_TRUE(resumed[0].exited && resumed[0].code_or_signal == 0)
      << "the resumed staller " << (resumed[0].exited ? "exited with " : "was killed by ") << resumed[0].code_or_signal;
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  Table t = Table::open(name);
  // The staller erased keys from the top down until its stage came (a shift is needed).
  const std::uint64_t untouched = c.op == Op::kErase ? kCommitted - 1 - staller_at[0] : kCommitted;
  for (std::uint64_t i = 0; i < untouched; ++i) {
    ASSERT_TRUE(t.get(key_of(i))) << "committed key " << i << " lost";
  }
}

std::vector<StallCase> stall_cases() {
  std::vector<StallCase> cases;
  for (Engine e : built_engines()) {
    cases.push_back({e, FaultPoint::kAfterLock, Op::kInsert});
    cases.push_back({e, FaultPoint::kMidShift, Op::kInsert});
    cases.push_back({e, FaultPoint::kMidShift, Op::kErase});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kInsert});
    cases.push_back({e, FaultPoint::kAfterSlotWrite, Op::kAssign});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Engines, Stall, ::testing::ValuesIn(stall_cases()), case_name);

}  // namespace
}  // namespace shmht::test
