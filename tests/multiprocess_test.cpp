// multiprocess_test.cpp - invariants that must hold when forked processes share a table.
// Parameterised over every built engine.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>

#include <gtest/gtest.h>

#include "shmht/check.hpp"
#include "shmht/table.hpp"
#include "test_support.hpp"

namespace shmht::test {
namespace {

class MultiProcess : public ::testing::TestWithParam<Engine> {
 protected:
  Table make(std::uint64_t capacity) { return Table::create(name_, {.capacity = capacity, .engine = GetParam()}); }
  Table open_in_child() { return Table::open(name_, {.engine = GetParam()}); }
  ScopedName name_;
  Children children_;
};

TEST_P(MultiProcess, DisjointInsertsAreAllFound) {
  constexpr int kChildren = 4, kPerChild = 20'000;
  Table parent = make(kChildren * kPerChild);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      for (int i = 0; i < kPerChild; ++i) {
        if (!t.insert(key_of(c * kPerChild + i), std::to_string(c))) return 1;
      }
      return 0;
    });
  }
  children_.expect_all_succeed();
  ASSERT_EQ(parent.size(), std::uint64_t{kChildren * kPerChild});
  for (int c = 0; c < kChildren; ++c) {
    for (int i = 0; i < kPerChild; ++i) ASSERT_EQ(parent.get(key_of(c * kPerChild + i)), std::to_string(c));
  }
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

// size() read while others write must stay a plausible count: under lockfree a counter
// word can hold a running operation's descriptor reference, which size() must finish
// rather than add up (it once read as about 2^40 items).
TEST_P(MultiProcess, SizeStaysInRangeWhileOthersWrite) {
  constexpr int kChildren = 2, kKeys = 2000;
  Table parent = make(kChildren * kKeys);
  SharedArray<std::atomic<int>> stop(1);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      for (std::uint64_t i = 0; stop[0].load() == 0; ++i) {
        const std::string key = key_of(c * kKeys + i % kKeys);
        if (i % 3 == 2) {
          t.erase(key);
        } else {
          t.assign(key, "v");
        }
      }
      return 0;
    });
  }
  for (int poll = 0; poll < 20'000; ++poll) {
    const std::uint64_t size = parent.size();
    if (size > std::uint64_t{kChildren * kKeys}) {
      stop[0].store(1);
      FAIL() << "size() read " << size << " with at most " << kChildren * kKeys << " keys possible";
    }
  }
  stop[0].store(1);
  children_.expect_all_succeed();
}

// Issue 11's producer/consumer: one process inserts, another erases everything, both
// attached throughout. Memory the consumer frees must feed the producer (through the
// shared free lists), so the file stops growing: after 20 rounds it is at most twice its
// size after round 2 (it grew by one round's records every round before).
TEST_P(MultiProcess, MemoryFreedByOneProcessIsReusedByAnother) {
  constexpr int kRounds = 20, kItems = 20'000;
  Table parent = make(kItems * 2);
  SharedArray<std::atomic<int>> phase(1);  // 2r: producer's turn in round r; 2r + 1: consumer's
  SharedArray<std::uint64_t> file_bytes(kRounds);
  auto wait_for = [&](int wanted) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (phase[0].load() != wanted) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  };
  children_.spawn([&] {
    Table t = open_in_child();
    const std::string value(100, 'p');
    for (int round = 0; round < kRounds; ++round) {
      if (!wait_for(2 * round)) return 1;
      for (int i = 0; i < kItems; ++i) t.insert(key_of(round * kItems + i), value);
      phase[0].store(2 * round + 1);
    }
    return 0;
  });
  children_.spawn([&] {
    Table t = open_in_child();
    for (int round = 0; round < kRounds; ++round) {
      if (!wait_for(2 * round + 1)) return 1;
      for (int i = 0; i < kItems; ++i) {
        if (!t.erase(key_of(round * kItems + i))) return 2;
      }
      file_bytes[round] = t.stats().apparent_bytes;
      phase[0].store(2 * round + 2);
    }
    return 0;
  });
  children_.expect_all_succeed(std::chrono::seconds(120));
  EXPECT_EQ(parent.size(), 0u);
  std::printf("[ %s ] file after round 2: %llu bytes, after round %d: %llu bytes\n", std::string(engine_name(GetParam())).c_str(),
              static_cast<unsigned long long>(file_bytes[1]), kRounds, static_cast<unsigned long long>(file_bytes[kRounds - 1]));
  EXPECT_LE(file_bytes[kRounds - 1], 2 * file_bytes[1])
      << "the file grew from " << file_bytes[1] << " bytes after round 2 to " << file_bytes[kRounds - 1] << " after round "
      << kRounds;
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
  EXPECT_EQ(report.unaccounted_bytes, 0u);
}

TEST_P(MultiProcess, CountersIncrementedByAssignSumToWhatChildrenReport) {
  constexpr int kChildren = 4, kCountersPerChild = 8, kRounds = 3000;
  Table parent = make(1000);
  SharedArray<std::uint64_t> reported(kChildren);
  for (int c = 0; c < kChildren; ++c) {
    children_.spawn([&, c] {
      Table t = open_in_child();
      std::uint64_t increments = 0;
      for (int round = 0; round < kRounds; ++round) {
        const std::string key = "counter-" + std::to_string(c) + "-" + std::to_string(round % kCountersPerChild);
        const auto current = t.get(key);
        const std::uint64_t next = (current ? std::stoull(*current) : 0) + 1;
        t.assign(key, std::to_string(next));
        // Churn other keys so increments interleave with inserts, erases and shifts.
        t.assign("noise-" + std::to_string(c) + "-" + std::to_string(round % 97), std::string(round % 50, 'n'));
        if (round % 3 == 0) t.erase("noise-" + std::to_string(c) + "-" + std::to_string((round + 13) % 97));
        ++increments;
      }
      reported[c] = increments;
      return 0;
    });
  }
  children_.expect_all_succeed();
  std::uint64_t table_sum = 0, reported_sum = 0;
  for (int c = 0; c < kChildren; ++c) {
    reported_sum += reported[c];
    for (int k = 0; k < kCountersPerChild; ++k) {
      table_sum += std::stoull(parent.get("counter-" + std::to_string(c) + "-" + std::to_string(k)).value_or("0"));
    }
  }
  EXPECT_EQ(reported_sum, std::uint64_t{kChildren * kRounds});
  EXPECT_EQ(table_sum, reported_sum);
  const CheckReport report = check_table(name_);
  EXPECT_TRUE(report.clean) << (report.problems.empty() ? "" : report.problems.front());
}

TEST_P(MultiProcess, IterationDuringInsertsNeverMissesAStableKey) {
  constexpr int kStable = 20'000, kWriters = 2, kPasses = 5;
  Table parent = make(200'000);
  for (int i = 0; i < kStable; ++i) parent.insert("stable-" + std::to_string(i), "s");
  SharedArray<std::atomic<int>> stop(1);
  for (int w = 0; w < kWriters; ++w) {
    children_.spawn([&, w] {
      Table t = open_in_child();
      // Inserts and erases of other keys shift runs in both directions under the iterator.
      for (std::uint64_t i = 0; stop[0].load() == 0; ++i) {
        t.insert("churn-" + std::to_string(w) + "-" + std::to_string(i % 50'000), "c");
        if (i % 2 == 1) t.erase("churn-" + std::to_string(w) + "-" + std::to_string((i * 7) % 50'000));
      }
      return 0;
    });
  }
  for (int pass = 0; pass < kPasses; ++pass) {
    std::unordered_map<std::string, int> seen;
    parent.for_each([&](std::string_view k, std::string_view) {
      if (k.rfind("stable-", 0) == 0) ++seen[std::string(k)];
    });
    for (int i = 0; i < kStable; ++i) {
      const auto it = seen.find("stable-" + std::to_string(i));
      ASSERT_NE(it, seen.end()) << "pass " << pass << ": stable key " << i << " missed";
      ASSERT_EQ(it->second, 1) << "pass " << pass << ": stable key " << i << " seen " << it->second << " times";
    }
  }
  stop[0].store(1);
  children_.expect_all_succeed();
}

TEST_P(MultiProcess, AttachedPidsListLiveProcessesOnlyAndDeadEntriesAreReused) {
  Table parent = make(1000);
  SharedArray<std::atomic<int>> ready(1);
  const pid_t child = children_.spawn([&] {
    Table t = open_in_child();
    t.assign("from-child", "x");
    ready[0].store(1);
    pause();  // killed by the parent while attached
    return 0;
  });
  while (ready[0].load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto pids = parent.stats().attached_pids;
  EXPECT_NE(std::find(pids.begin(), pids.end(), child), pids.end()) << "live child not listed";
  kill(child, SIGKILL);
  children_.wait_all();
  pids = parent.stats().attached_pids;
  EXPECT_EQ(std::find(pids.begin(), pids.end(), child), pids.end()) << "dead child still listed";
  EXPECT_EQ(parent.get("from-child"), "x");
  // Its entry (with its chunk and free lists) is inherited, not leaked: max_processes
  // attachments still fit after a death.
  std::vector<Table> handles;
  for (int i = 0; i < 3; ++i) handles.push_back(Table::open(name_, {.engine = GetParam()}));
  EXPECT_EQ(parent.stats().attached_pids.size(), 4u);
}

TEST_P(MultiProcess, InheritedHandleRefusesToWorkInTheChild) {
  Table parent = make(1000);
  parent.assign("k", "v");
  children_.spawn([&] {
    try {
      parent.get("k");
      return 1;
    } catch (const Error& e) {
      return e.code() == ErrorCode::kInvalidArgument ? 0 : 2;
    }
  });
  children_.expect_all_succeed();
  EXPECT_EQ(parent.get("k"), "v") << "the child's exit must not detach the parent";
  EXPECT_EQ(parent.stats().attached_pids.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Engines, MultiProcess, ::testing::ValuesIn(built_engines()), engine_param_name);

}  // namespace
}  // namespace shmht::test
