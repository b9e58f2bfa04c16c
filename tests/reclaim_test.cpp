// reclaim_test.cpp - records leaked by a writer killed between unlinking and freeing (or
// allocating and linking) are found by `check` and put back on the free lists by
// `check --repair` (CheckOptions::reclaim_leaked) when nobody else is attached; `stat`
// reports the free records per size class.
#include <signal.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "layout/size_classes.hpp"
#include "record_io.hpp"
#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using testing::FaultPoint;

std::uint64_t class_bytes_of(std::size_t key_bytes, std::size_t value_bytes) {
  return layout::class_bytes(layout::size_class_of(record_bytes_for(key_bytes, value_bytes)));
}

class LeakedRecords : public ::testing::TestWithParam<Engine> {
 protected:
  static constexpr std::size_t kValueBytes = 300;

  // A child erases "victim" and is killed after the erase took effect but before it freed
  // the record: the record is in no slot and on no free list. Returns its class bytes.
  std::uint64_t leak_one_record(const std::string& name) {
    {
      Table t = Table::create(name, {.capacity = 1000, .engine = GetParam()});
      for (int i = 0; i < 50; ++i) t.insert(key_of(i), "small");
      t.insert("victim", std::string(kValueBytes, 'v'));
    }
    Children children;
    children.spawn([&] {
      Table t = Table::open(name);
      die_at(stage_in(GetParam(), FaultPoint::kBeforeUnlock));
      t.erase("victim");
      return 3;
    });
    const auto outcomes = children.wait_all(std::chrono::seconds(20));
    EXPECT_EQ(outcomes.size(), 1u);
    EXPECT_FALSE(outcomes.empty() || outcomes[0].exited) << "the child was not killed inside its erase";
    return class_bytes_of(std::string("victim").size(), kValueBytes);
  }
};

TEST_P(LeakedRecords, AreReportedAndReclaimedByRepairWhenNobodyIsAttached) {
  ScopedName name;
  const std::uint64_t leaked = leak_one_record(name);

  const CheckReport before = check_table(name);
  EXPECT_TRUE(before.clean) << (before.problems.empty() ? "" : before.problems.front());
  EXPECT_EQ(before.unaccounted_bytes, leaked);
  EXPECT_EQ(before.reclaimed_bytes, 0u) << "a plain check changes nothing";

  const CheckReport repaired = check_table(name, {.reclaim_leaked = true});
  EXPECT_TRUE(repaired.clean) << (repaired.problems.empty() ? "" : repaired.problems.front());
  EXPECT_EQ(repaired.reclaimed_bytes, leaked);
  EXPECT_TRUE(repaired.not_reclaimed_because.empty()) << repaired.not_reclaimed_because;

  const CheckReport after = check_table(name);
  EXPECT_TRUE(after.clean) << (after.problems.empty() ? "" : after.problems.front());
  EXPECT_EQ(after.unaccounted_bytes, 0u);

  // The reclaimed record is reused: a record of its class takes it, not new arena space.
  Table t = Table::open(name);
  EXPECT_FALSE(t.contains("victim"));
  const Stats stats = t.stats();
  bool listed = false;
  for (const FreeClass& c : stats.free_by_class) listed |= c.record_bytes == leaked && c.records >= 1;
  EXPECT_TRUE(listed) << "stat does not list the reclaimed record's class";
  t.insert("again", std::string(kValueBytes, 'a'));
  EXPECT_EQ(t.stats().arena_bytes, stats.arena_bytes);
  t.close();
  const CheckReport last = check_table(name);
  EXPECT_TRUE(last.clean && last.unaccounted_bytes == 0);
}

TEST_P(LeakedRecords, AreNotReclaimedWhileAnotherProcessIsAttached) {
  ScopedName name;
  const std::uint64_t leaked = leak_one_record(name);
  Table attached = Table::open(name);  // another attachment: its records in flight would look leaked

  const CheckReport report = check_table(name, {.reclaim_leaked = true});
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.reclaimed_bytes, 0u);
  EXPECT_EQ(report.unaccounted_bytes, leaked);
  EXPECT_NE(report.not_reclaimed_because.find(std::to_string(getpid())), std::string::npos)
      << "the reason names the attached pid: " << report.not_reclaimed_because;
  attached.close();
  EXPECT_EQ(check_table(name, {.reclaim_leaked = true}).reclaimed_bytes, leaked) << "reclaimed once it detached";
}

INSTANTIATE_TEST_SUITE_P(AllEngines, LeakedRecords, ::testing::ValuesIn(built_engines()), engine_param_name);

// A writer killed between taking a record off its free list and updating the list's
// counters leaves them one record off. check does not call that damage while the dead
// entry waits for an heir (the counters are not settled), and the heir recounts them.
TEST(FreeListCounters, AreRecountedByTheHeirOfAWriterKilledBetweenListAndCounter) {
  ScopedName name;
  Table parent = Table::create(name, {.capacity = 1000, .max_processes = 2, .engine = Engine::kSeqlock});
  Children children;
  children.spawn([&] {
    Table t = Table::open(name);  // entry 1
    t.insert("a", std::string(100, 'x'));
    t.erase("a");                 // one record on entry 1's free list
    die_at(FaultPoint::kFreeListChanged);
    t.insert("b", std::string(100, 'y'));  // pops it, killed before the counters move
    return 3;
  });
  const auto outcomes = children.wait_all(std::chrono::seconds(20));
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_FALSE(outcomes[0].exited) << "the child was not killed at kFreeListChanged";

  const CheckReport while_dead = check_table(name);
  EXPECT_TRUE(while_dead.clean) << (while_dead.problems.empty() ? "" : while_dead.problems.front());

  Table heir = Table::open(name);  // entry 0 is live: takes the dead entry 1
  bool listed = false;
  for (const FreeClass& c : heir.stats().free_by_class) listed |= c.records != 0;
  EXPECT_FALSE(listed) << "the popped record is still counted as free";
  heir.close();
  parent.close();
  const CheckReport after = check_table(name);
  EXPECT_TRUE(after.clean) << (after.problems.empty() ? "" : after.problems.front());
}

// stat's free records per size class follow the records freed, size class by size class.
TEST(FreeByClass, CountsTheRecordsFreedInEachClass) {
  ScopedName name;
  Table t = Table::create(name, {.capacity = 1000});
  const auto key = [](char prefix, int i) { return std::string(1, prefix).append(std::to_string(i)); };
  for (int i = 0; i < 10; ++i) t.insert(key('a', i), std::string(40, 'x'));
  for (int i = 0; i < 5; ++i) t.insert(key('b', i), std::string(1000, 'x'));
  EXPECT_TRUE(t.stats().free_by_class.empty());
  for (int i = 0; i < 10; ++i) t.erase(key('a', i));
  for (int i = 0; i < 5; ++i) t.erase(key('b', i));
  const Stats s = t.stats();
  ASSERT_EQ(s.free_by_class.size(), 2u);
  EXPECT_EQ(s.free_by_class[0].record_bytes, class_bytes_of(2, 40));
  EXPECT_EQ(s.free_by_class[0].records, 10u);
  EXPECT_EQ(s.free_by_class[1].record_bytes, class_bytes_of(2, 1000));
  EXPECT_EQ(s.free_by_class[1].records, 5u);
  EXPECT_EQ(s.free_record_bytes, 10 * class_bytes_of(2, 40) + 5 * class_bytes_of(2, 1000));
  t.insert("c", std::string(40, 'y'));
  EXPECT_EQ(t.stats().free_by_class[0].records, 9u) << "an allocation of that class took one";
}

}  // namespace
}  // namespace shmht::test
