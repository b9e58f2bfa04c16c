// lockfree_growth_test.cpp - the lock-free engine grows its slot array (issue 20): from a
// tiny table to 100k keys with every key readable throughout; two writers growing it
// while a reader finds every key inserted before; a mover stopped inside its group-move
// KCAS stops nobody: another process finishes the migration (helping that KCAS).
//
// Every multi-process case bounds its children (Children::wait_all kills overrunners),
// SIGCONTs what it stopped, and removes its table (ScopedName) whatever happens.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "shmht/testing.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

using namespace std::chrono_literals;
using testing::FaultPoint;

void expect_clean(const std::string& name) {
  const CheckReport report = check_table(name);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

class LockFreeGrowth : public ::testing::Test {
 protected:
  void SetUp() override { alarm(180); }  // a hang fails the test instead of the run
  void TearDown() override {
    alarm(0);
    testing::set_fault_hook(nullptr);
  }
  Table create(std::uint64_t capacity, std::uint32_t max_processes = 8) {
    return Table::create(name_, {.capacity = capacity, .max_key_bytes = 32, .max_value_bytes = 32,
                                 .max_processes = max_processes, .engine = Engine::kLockFreeRobinHood});
  }
  ScopedName name_;
};

// prefix + decimal i (appended: GCC 12's -Wrestrict misreads "literal" + std::to_string).
std::string cat(std::string prefix, std::uint64_t i) { return prefix.append(std::to_string(i)); }
std::string value_for(std::uint64_t i) { return cat("v", i * 7); }

// (a) Capacity 8 to 100,000 keys: at every checkpoint each key inserted so far reads back
// with its value and the size is exact; the slot array doubled at least ten times.
TEST_F(LockFreeGrowth, GrowsFromEightSlotsToAHundredThousandKeys) {
  constexpr std::uint64_t kKeys = 100'000, kCheckpoint = 12'500;
  Table t = create(8);
  const std::uint64_t first_slots = t.stats().slots;
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(t.insert(key_of(i), value_for(i))) << i;
    if ((i + 1) % kCheckpoint != 0) continue;
    for (std::uint64_t j = 0; j <= i; ++j) ASSERT_EQ(t.get(key_of(j)), value_for(j)) << "after " << i + 1 << " inserts";
    ASSERT_FALSE(t.contains(key_of(i + 1)));
    ASSERT_EQ(t.size(), i + 1);
  }
  const Stats s = t.stats();
  EXPECT_GE(s.growths, 10u) << "home slots " << first_slots << " -> " << s.slots;
  EXPECT_GE(s.slots, kKeys) << "the array grew with the keys";
  // Erases and overwrites on the grown table, then every key once by iteration.
  for (std::uint64_t i = 0; i < kKeys; i += 3) ASSERT_TRUE(t.erase(key_of(i))) << i;
  for (std::uint64_t i = 1; i < kKeys; i += 3) ASSERT_FALSE(t.assign(key_of(i), "w")) << i;
  std::uint64_t seen = 0;
  t.for_each([&](std::string_view k, std::string_view v) {
    ++seen;
    const std::uint64_t i = std::stoull(std::string(k.substr(4)));
    EXPECT_NE(i % 3, 0u) << k;
    EXPECT_EQ(v, i % 3 == 1 ? std::string("w") : value_for(i)) << k;
  });
  EXPECT_EQ(seen, kKeys - (kKeys + 2) / 3);
  EXPECT_EQ(t.size(), seen);
  t.close();
  expect_clean(name_);
}

// (b) Two processes insert 50,000 keys each into a table made for 100 while the parent
// keeps reading 500 keys inserted before they started: every read finds its key, through
// every growth and migration the writers make.
TEST_F(LockFreeGrowth, ReadersFindEveryOldKeyWhileTwoWritersGrowTheTable) {
  constexpr std::uint64_t kOld = 500, kPerWriter = 50'000;
  std::uint32_t growths_before = 0;
  {
    Table t = create(100);
    for (std::uint64_t i = 0; i < kOld; ++i) ASSERT_TRUE(t.insert(cat("old-", i), value_for(i)));
    growths_before = t.stats().growths;
  }
  SharedArray<std::atomic<int>> done(2);
  StartLine start(3);
  Children writers;
  for (int w = 0; w < 2; ++w) {
    writers.spawn([&, w] {
      Table t = Table::open(name_);
      if (!start.arrive_and_wait()) return 3;
      for (std::uint64_t i = 0; i < kPerWriter; ++i) {
        if (!t.insert(cat(cat("w", static_cast<std::uint64_t>(w)) + "-", i), value_for(i))) return 2;
      }
      done[w] = 1;
      return 0;
    });
  }
  Table reader = Table::open(name_);
  ASSERT_TRUE(start.arrive_and_wait());
  std::uint64_t reads = 0, misses = 0;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while ((done[0].load() == 0 || done[1].load() == 0) && std::chrono::steady_clock::now() < deadline) {
    for (std::uint64_t i = 0; i < kOld; i += 7) {
      const std::optional<std::string> got = reader.get(cat("old-", i));
      ++reads;
      if (got != value_for(i) && misses++ == 0) ADD_FAILURE() << "old-" << i << " read as " << got.value_or("(absent)");
    }
  }
  writers.expect_all_succeed(60s);
  EXPECT_EQ(misses, 0u) << "of " << reads << " reads";
  EXPECT_GE(reader.stats().growths, growths_before + 5) << "the writers grew the table while it was read";
  EXPECT_EQ(reader.size(), kOld + 2 * kPerWriter);
  for (std::uint64_t i = 0; i < kOld; ++i) ASSERT_EQ(reader.get(cat("old-", i)), value_for(i)) << i;
  for (int w = 0; w < 2; ++w) {
    for (std::uint64_t i = 0; i < kPerWriter; i += 13) {
      ASSERT_EQ(reader.get(cat(cat("w", static_cast<std::uint64_t>(w)) + "-", i)), value_for(i)) << w << " " << i;
    }
  }
  reader.close();
  expect_clean(name_);
}

// (c) A child stops itself inside a group move: at the first KCAS install after it
// published a larger array (that KCAS is the move of its key's group), so its reference
// sits in the old home bucket's control word. The parent keeps inserting and must finish
// the migration within a bound, helping that KCAS; then the child resumes and finishes.
std::atomic<bool> g_grew{false};
std::atomic<bool> g_stopped_once{false};
void stop_in_first_group_move(FaultPoint reached) {
  if (reached == FaultPoint::kGrowthArrayPublished) g_grew = true;
  if (reached == FaultPoint::kKcasMidInstall && g_grew && !g_stopped_once.exchange(true)) raise(SIGSTOP);
}

TEST_F(LockFreeGrowth, AMoverStoppedInsideItsGroupMoveStopsNobody) {
  constexpr std::uint64_t kChildKeys = 3000, kParentKeys = 20'000;
  std::uint32_t growths_before = 0;
  {
    Table t = create(1000);
    growths_before = t.stats().growths;
  }
  Children children;
  const pid_t mover = children.spawn([&] {
    Table t = Table::open(name_);
    testing::set_fault_hook(stop_in_first_group_move);
    for (std::uint64_t i = 0; i < kChildKeys; ++i) {
      if (!t.insert(cat("child-", i), value_for(i))) return 2;
    }
    return g_stopped_once ? 0 : 4;  // 4: it never stopped inside a move
  });
  ASSERT_TRUE(wait_until_stopped(mover, 60s)) << "the child never reached a group move";
  struct Resume {
    pid_t pid;
    ~Resume() { kill(pid, SIGCONT); }  // whatever the parent's checks do
  } resume{mover};

  Table t = Table::open(name_);
  const Stats at_stop = t.stats();
  ASSERT_TRUE(at_stop.migrating) << "stopped inside a group move, so during a migration";
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::uint64_t inserted = 0;
  while (t.stats().migrating) {
    ASSERT_LT(inserted, kParentKeys) << "the parent's inserts never finished the migration";
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the migration waited for the stopped mover";
    ASSERT_TRUE(t.insert(cat("parent-", inserted), value_for(inserted)));
    ++inserted;
  }
  EXPECT_GT(t.stats().growths, growths_before) << "the migration the mover stopped in was finished";
  for (std::uint64_t i = inserted; i < kParentKeys; ++i) ASSERT_TRUE(t.insert(cat("parent-", i), value_for(i)));

  kill(mover, SIGCONT);
  children.expect_all_succeed(60s);
  EXPECT_EQ(t.size(), kChildKeys + kParentKeys);
  for (std::uint64_t i = 0; i < kChildKeys; ++i) ASSERT_EQ(t.get(cat("child-", i)), value_for(i)) << i;
  for (std::uint64_t i = 0; i < kParentKeys; ++i) ASSERT_EQ(t.get(cat("parent-", i)), value_for(i)) << i;
  t.close();
  expect_clean(name_);
}

}  // namespace
}  // namespace shmht::test
