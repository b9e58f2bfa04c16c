// crash_test.cpp - a writer SIGKILLed at each fault point inside its write path must not
// stop the others, lose a committed key or leave a table that `check` rejects.
#include <signal.h>

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;

// The compare_and_set and take cases run the same write paths through the new entry
// points: a CAS ends as an insert, an overwrite or an erase; take is an erase that reads.
enum class Op { kInsert, kErase, kAssign, kCasInsert, kCasOverwrite, kCasErase, kTake };

bool erases(Op op) { return op == Op::kErase || op == Op::kCasErase || op == Op::kTake; }

struct CrashCase {
  Engine engine;
  FaultPoint point;
  Op op;
  std::uint64_t expected_repairs;  // interrupted shifts the next lock holder finds
};

std::string case_name(const ::testing::TestParamInfo<CrashCase>& info) {
  static const char* points[] = {"AfterLock", "AfterSlotWrite", "MidShift", "BeforeUnlock", "ReadLocked"};
  static const char* ops[] = {"Insert", "Erase", "Assign", "CasInsert", "CasOverwrite", "CasErase", "Take"};
  return std::string(engine_name(info.param.engine)) + "_" + ops[static_cast<int>(info.param.op)] + "_" +
         points[static_cast<int>(info.param.point)];
}

class Crash : public ::testing::TestWithParam<CrashCase> {};

TEST_P(Crash, SurvivorsRepairAndLoseNoCommittedKey) {
  const CrashCase c = GetParam();
  ScopedName name;
  constexpr std::uint64_t kCapacity = 4000, kCommitted = 3000;  // load ~0.64: inserts shift
  Table parent = Table::create(name, {.capacity = kCapacity, .engine = c.engine});
  for (std::uint64_t i = 0; i < kCommitted; ++i) parent.insert(key_of(i), "committed");

  Children children;
  children.spawn([&] {
    Table t = Table::open(name, {.engine = c.engine});
    die_at(stage_in(c.engine, c.point));
    // Keep operating until the fault point fires (a shift needs the right neighbours).
    for (std::uint64_t i = 0; i < kCommitted; ++i) {
      switch (c.op) {
        case Op::kInsert: t.insert("victim-" + std::to_string(i), "v"); break;
        case Op::kErase: t.erase(key_of(kCommitted - 1 - i)); break;
        case Op::kAssign: t.assign(key_of(i), "overwritten"); break;
        case Op::kCasInsert: t.compare_and_set("victim-" + std::to_string(i), std::nullopt, "v"); break;
        case Op::kCasOverwrite: t.compare_and_set(key_of(i), "committed", "overwritten"); break;
        case Op::kCasErase: t.compare_and_set(key_of(kCommitted - 1 - i), "committed", std::nullopt); break;
        case Op::kTake: t.take(key_of(kCommitted - 1 - i)); break;
      }
    }
    return 3;  // the fault point never fired
  });
  const auto outcomes = children.wait_all(std::chrono::seconds(30));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "the child finished without reaching the fault point (exit " << outcomes[0].code_or_signal << ")";
  ASSERT_EQ(outcomes[0].code_or_signal, SIGKILL);

  // The first lock holder after the death repairs; check is that holder here.
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.repaired_shifts, c.expected_repairs);

  // Survivors proceed, and every key whose operation completed is there.
  const std::uint64_t erased = erases(c.op) ? kCommitted - report.items : 0;
  for (std::uint64_t i = 0; i < kCommitted - erased; ++i) {
    const auto v = parent.get(key_of(i));
    ASSERT_TRUE(v) << "committed key " << i << " lost";
    ASSERT_TRUE(*v == "committed" || *v == "overwritten") << "key " << i << " holds " << *v;
  }
  EXPECT_TRUE(parent.insert("after-crash", "ok"));
  EXPECT_EQ(parent.get("after-crash"), "ok");
  EXPECT_EQ(parent.size(), report.items + 1);
}

std::vector<CrashCase> crash_cases() {
  std::vector<CrashCase> cases;
  for (Engine e : built_engines()) {
    // The lock-free engine never leaves a half-done shift: its whole shift is one KCAS,
    // finished by whoever meets it, so nothing is left for check to repair.
    const std::uint64_t shift_repairs = e == Engine::kLockFreeRobinHood ? 0 : 1;
    cases.push_back({e, FaultPoint::kAfterLock, Op::kInsert, 0});
    cases.push_back({e, FaultPoint::kMidShift, Op::kInsert, shift_repairs});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kInsert, 0});
    cases.push_back({e, FaultPoint::kMidShift, Op::kErase, shift_repairs});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kErase, 0});
    cases.push_back({e, FaultPoint::kAfterSlotWrite, Op::kAssign, 0});
    cases.push_back({e, FaultPoint::kAfterLock, Op::kCasInsert, 0});
    cases.push_back({e, FaultPoint::kMidShift, Op::kCasInsert, shift_repairs});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kCasInsert, 0});
    cases.push_back({e, FaultPoint::kAfterLock, Op::kCasOverwrite, 0});
    cases.push_back({e, FaultPoint::kAfterSlotWrite, Op::kCasOverwrite, 0});
    cases.push_back({e, FaultPoint::kMidShift, Op::kCasErase, shift_repairs});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kCasErase, 0});
    cases.push_back({e, FaultPoint::kAfterLock, Op::kTake, 0});
    cases.push_back({e, FaultPoint::kMidShift, Op::kTake, shift_repairs});
    cases.push_back({e, FaultPoint::kBeforeUnlock, Op::kTake, 0});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Engines, Crash, ::testing::ValuesIn(crash_cases()), case_name);

// A reader killed while it holds a read lock must not wedge writers (engines whose
// readers lock: the global mutex, a striped stripe held shared; seqlock readers hold
// nothing). Writers to every part of the table then finish within the time limit.
class ReaderCrash : public ::testing::TestWithParam<Engine> {};

TEST_P(ReaderCrash, WritersProceedAfterAReaderDiesHoldingItsLock) {
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 2000, .engine = GetParam()});
  for (int i = 0; i < 1000; ++i) parent.insert(key_of(i), "v");
  Children children;
  children.spawn([&] {
    Table t = Table::open(name, {.engine = GetParam()});
    die_at(FaultPoint::kReadLocked);
    t.get(key_of(0));
    return 3;  // not reached: the hook kills us
  });
  const auto outcomes = children.wait_all(std::chrono::seconds(30));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "the reader was not killed at its fault point";

  // First the parent alone (no new attachment can reuse the dead reader's entry and so
  // clear its flag for us): it must detect the dead reader itself.
  for (int i = 0; i < 1000; i += 10) parent.assign(key_of(i), "rewritten");
  Children writers;
  for (int w = 0; w < 2; ++w) {
    writers.spawn([&, w] {
      Table t = Table::open(name, {.engine = GetParam()});
      for (int i = w; i < 1000; i += 2) t.assign(key_of(i), "rewritten");  // every stripe
      return 0;
    });
  }
  writers.expect_all_succeed(std::chrono::seconds(60));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(parent.get(key_of(i)), "rewritten");
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

INSTANTIATE_TEST_SUITE_P(Engines, ReaderCrash, ::testing::Values(Engine::kGlobalLock, Engine::kStripedRwLock),
                         engine_param_name);

// Lock-free: a process killed with one of its installs (RDCSS) in a word, before it
// completed it, and an heir that installs before it finished what the entry left. The heir
// installs through the entry's RDCSS descriptor as soon as it helps another process's
// operation, which attaching does (help_all finishes entry 0's operation before entry 1's):
// if that reuse came before the dead holder's install was completed, the word would keep
// a reference to a descriptor that moved on, and everyone meeting it would report a corrupt
// table (the soak's "refers to a lock-free operation that is over"). Two entries: a stopped
// process holds entry 0 with its operation published, so the heir takes the victim's entry 1.
TEST(LockFreeHeir, CompletesTheDeadHoldersInstallBeforeReusingItsDescriptor) {
  ScopedName name;
  constexpr std::uint64_t kCommitted = 300;
  {
    Table t = Table::create(name, {.capacity = 1000, .max_processes = 2, .engine = Engine::kLockFreeRobinHood});
    for (std::uint64_t i = 0; i < kCommitted; ++i) t.insert(key_of(i), "committed");
  }
  Children stopped;
  const pid_t staller = stopped.spawn([&] {
    Table t = Table::open(name);  // entry 0
    stop_once_at(FaultPoint::kKcasPublished);
    t.insert("staller", "s");
    return stop_pending() ? 3 : 0;
  });
  ASSERT_TRUE(wait_until_stopped(staller, std::chrono::seconds(20))) << "the staller never stopped with its insert published";
  Children victims;
  victims.spawn([&] {
    Table t = Table::open(name);  // entry 1
    die_at(FaultPoint::kKcasMidRdcss);
    t.insert("victim", "v");  // its first RDCSS install (the new key's slot: the counter and version are direct) kills it
    return 3;
  });
  const auto died = victims.wait_all(std::chrono::seconds(30));
  ASSERT_EQ(died.size(), 1u);
  ASSERT_FALSE(died[0].exited) << "the victim finished without reaching its install (exit " << died[0].code_or_signal << ")";
  ASSERT_EQ(died[0].code_or_signal, SIGKILL);

  {
    std::optional<Table> heir;
    ASSERT_NO_THROW(heir.emplace(Table::open(name))) << "attaching to the dead victim's entry";
    for (std::uint64_t i = 0; i < kCommitted; ++i) ASSERT_EQ(heir->get(key_of(i)), "committed") << "key " << i;
    EXPECT_EQ(heir->get("staller"), "s") << "attaching finishes the stopped process's published insert";
    EXPECT_NO_THROW(heir->get("victim"));  // either state: it never returned
    EXPECT_TRUE(heir->insert("after", "ok"));
    EXPECT_TRUE(heir->erase("after"));
  }
  kill(staller, SIGCONT);
  const auto resumed = stopped.wait_all(std::chrono::seconds(30));
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_TRUE(resumed[0].exited && resumed[0].code_or_signal == 0)
      << "the resumed staller " << (resumed[0].exited ? "exited with " : "was killed by ") << resumed[0].code_or_signal;
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.items, kCommitted + 1 + (Table::open(name).contains("victim") ? 1 : 0));
}

}  // namespace
}  // namespace shmht::test
