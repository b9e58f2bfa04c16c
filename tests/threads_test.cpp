// threads_test.cpp - the engines' concurrency, exercised by threads of one process so
// that ThreadSanitizer can check it (scripts/test.sh runs this under -fsanitize=thread).
// Each thread opens its own handle (a handle is single-thread); handles on one file share
// one mapping, so TSan sees every thread's accesses to the same shared bytes.
#include <atomic>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

class Threads : public ::testing::TestWithParam<Engine> {
 protected:
  Table make(std::uint64_t capacity) { return Table::create(name_, {.capacity = capacity, .engine = GetParam()}); }
  Table open() { return Table::open(name_, {.engine = GetParam()}); }
  void expect_clean() {
    const CheckReport report = check_table(name_);
    EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  }
  template <class Body>
  void run_threads(int count, Body body) {
    std::vector<std::thread> threads;
    for (int t = 0; t < count; ++t) threads.emplace_back(body, t);
    for (auto& th : threads) th.join();
  }
  ScopedName name_;
};

TEST_P(Threads, DisjointInsertsAreAllFound) {
  constexpr int kThreads = 4, kPerThread = 3000;
  Table t = make(kThreads * kPerThread);
  std::atomic<int> failures{0};
  run_threads(kThreads, [&](int id) {
    Table mine = open();
    for (int i = 0; i < kPerThread; ++i) failures += !mine.insert(key_of(id * kPerThread + i), std::to_string(id));
  });
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(t.size(), std::uint64_t{kThreads * kPerThread});
  for (int i = 0; i < kThreads * kPerThread; ++i) ASSERT_EQ(t.get(key_of(i)), std::to_string(i / kPerThread));
  expect_clean();
}

// Writers store self-describing values ("<key>=<n>" repeated); readers of the same keys
// must only ever see one whole value, never a mix of two writes or a freed record.
TEST_P(Threads, ReadersNeverSeeATornValue) {
  constexpr int kKeys = 64, kWriters = 2, kReaders = 2, kWrites = 4000;
  Table t = make(1000);
  auto value_for = [](int key, int n) {
    const std::string unit = std::to_string(key) + "=" + std::to_string(n) + ";";
    std::string v;
    for (int r = 0; r < 1 + n % 7; ++r) v += unit;  // lengths vary: records change size class
    return v;
  };
  for (int k = 0; k < kKeys; ++k) t.assign(key_of(k), value_for(k, 0));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, missing{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      Table mine = open();
      for (int n = 1; n <= kWrites; ++n) mine.assign(key_of((n * 7 + w) % kKeys), value_for((n * 7 + w) % kKeys, n));
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      Table mine = open();
      for (int i = r; !done.load(std::memory_order_relaxed); ++i) {
        const int k = i % kKeys;
        const auto v = mine.get(key_of(k));
        if (!v) {
          ++missing;
          continue;
        }
        const std::string unit = v->substr(0, v->find(';') + 1);
        bool whole = !unit.empty() && unit.rfind(std::to_string(k) + "=", 0) == 0 && v->size() % unit.size() == 0;
        for (std::size_t at = 0; whole && at < v->size(); at += unit.size()) whole = v->compare(at, unit.size(), unit) == 0;
        torn += !whole;
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  done = true;
  for (std::size_t i = kWriters; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(missing.load(), 0) << "a key that is only ever overwritten went missing";
  expect_clean();
}

TEST_P(Threads, CountersAndChurnAddUp) {
  constexpr int kThreads = 3, kRounds = 2000;
  Table t = make(2000);
  run_threads(kThreads, [&](int id) {
    Table mine = open();
    for (int round = 0; round < kRounds; ++round) {
      const std::string key = "counter-" + std::to_string(id);
      mine.assign(key, std::to_string(std::stoi(mine.get(key).value_or("0")) + 1));
      mine.assign("churn-" + std::to_string(id) + "-" + std::to_string(round % 101), std::string(round % 40, 'c'));
      if (round % 2) mine.erase("churn-" + std::to_string(id) + "-" + std::to_string((round * 3) % 101));
    }
  });
  for (int id = 0; id < kThreads; ++id) EXPECT_EQ(t.get("counter-" + std::to_string(id)), std::to_string(kRounds));
  expect_clean();
}

// Read-modify-write under TSan: add (a compare_and_set loop) on one shared counter, and
// take racing assign on keys that move between threads. No increment is lost, and a
// taken value is one some thread wrote.
TEST_P(Threads, AddAndTakeRacingWritersLoseNothing) {
  constexpr int kThreads = 4, kRounds = 1500;
  Table t = make(2000);
  std::atomic<int> foreign{0};
  run_threads(kThreads, [&](int id) {
    Table mine = open();
    for (int round = 0; round < kRounds; ++round) {
      mine.add("cnt", 1);
      const std::string shared = "shared-" + std::to_string(round % 16);
      if ((round + id) % 2 == 0) {
        mine.assign(shared, "from-" + std::to_string(id) + std::string(round % 30, 'x'));
      } else if (const auto taken = mine.take(shared)) {
        foreign += taken->rfind("from-", 0) != 0;
      }
      mine.compare_and_set("flag", std::nullopt, std::to_string(id));
      mine.compare_and_set("flag", std::to_string(id), std::nullopt);
    }
  });
  EXPECT_EQ(decode_counter(t.get("cnt").value_or("")), kThreads * kRounds);
  EXPECT_EQ(foreign.load(), 0);
  expect_clean();
}

TEST_P(Threads, IterationDuringChurnSeesEveryStableKeyOnce) {
  constexpr int kStable = 3000;
  Table t = make(20'000);
  for (int i = 0; i < kStable; ++i) t.insert("stable-" + std::to_string(i), "s");
  std::atomic<bool> done{false};
  std::thread writer([&] {
    Table mine = open();
    for (int i = 0; !done.load(std::memory_order_relaxed); ++i) {
      mine.insert("churn-" + std::to_string(i % 5000), "c");
      if (i % 2) mine.erase("churn-" + std::to_string((i * 7) % 5000));
    }
  });
  for (int pass = 0; pass < 3; ++pass) {
    std::unordered_map<std::string, int> seen;
    t.for_each([&](std::string_view k, std::string_view) {
      if (k.rfind("stable-", 0) == 0) ++seen[std::string(k)];
    });
    EXPECT_EQ(seen.size(), std::size_t{kStable}) << "pass " << pass;
    for (const auto& [k, n] : seen) EXPECT_EQ(n, 1) << k << " seen " << n << " times in pass " << pass;
  }
  done = true;
  writer.join();
}

INSTANTIATE_TEST_SUITE_P(Engines, Threads, ::testing::ValuesIn(built_engines()), engine_param_name);

}  // namespace
}  // namespace shmht::test
